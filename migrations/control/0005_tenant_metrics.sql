-- Atrium control migration 0005: each server's per-tenant request figures
-- of the last hour, published every minute so that `atrium top` sees the
-- whole fleet. Unlogged: figures of the last hour are not worth a WAL
-- record, and after a crash they are rebuilt within a minute.
CREATE UNLOGGED TABLE public.tenant_metrics (
    server_id         TEXT             NOT NULL,
    tenant_id         INTEGER          NOT NULL
                                       CONSTRAINT tenant_metrics_tenant_id_fkey
                                       REFERENCES public.tenants (id) ON DELETE CASCADE,
    reported_at       TIMESTAMPTZ      NOT NULL DEFAULT now(),
    requests          BIGINT           NOT NULL,
    errors            BIGINT           NOT NULL,
    db_time_ms        DOUBLE PRECISION NOT NULL,
    -- counts per bucket of atrium_domain::latency::Histogram
    latency_histogram INTEGER[]        NOT NULL,
    CONSTRAINT tenant_metrics_pkey PRIMARY KEY (server_id, tenant_id)
);

CREATE INDEX idx_tenant_metrics_tenant_id ON public.tenant_metrics (tenant_id);
