-- Atrium control migration 0009: moving a tenant between clusters.
--
-- A move copies the tenant's schema to another cluster with logical
-- replication, pauses the tenant's writes for the final catch-up, and
-- flips the registry row. These tables exist on every cluster; the moves
-- themselves are recorded in the home registry.

-- What a move is doing, durably: a move that stops half-way (a crash, a
-- kill) is found and cleaned up by the next run. Its publication,
-- subscription and slot are all named atrium_move_<tenant id>.
CREATE TABLE public.tenant_moves (
    id               SERIAL      NOT NULL
                                 CONSTRAINT tenant_moves_pkey PRIMARY KEY,
    tenant_id        INTEGER     NOT NULL
                                 CONSTRAINT tenant_moves_tenant_id_fkey
                                 REFERENCES public.tenants (id) ON DELETE CASCADE,
    source           TEXT        NOT NULL,
    target           TEXT        NOT NULL,
    state            TEXT        NOT NULL
                                 CONSTRAINT tenant_moves_state_check
                                 CHECK (state IN ('preparing', 'copying', 'catching_up',
                                                  'cutting_over', 'done', 'failed')),
    detail           TEXT        NOT NULL DEFAULT '',
    max_pause_ms     INTEGER     NOT NULL,
    result           JSONB,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ
);

-- At most one unfinished move per tenant.
CREATE UNIQUE INDEX idx_tenant_moves_running ON public.tenant_moves (tenant_id)
    WHERE state NOT IN ('done', 'failed');

-- A tenant that must not be served from this cluster: on the target while
-- the copy is made, on the source once the registry points elsewhere. A
-- transaction that meets a fence is told the tenant moved (SQLSTATE
-- AT001), and the server asks the registry again.
CREATE TABLE public.tenant_fences (
    tenant_id  INTEGER     NOT NULL
                           CONSTRAINT tenant_fences_pkey PRIMARY KEY,
    reason     TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rows written on a fenced source at cut-over: when one arrives on the
-- target, the target has applied everything before it.
CREATE TABLE public.move_markers (
    tenant_id  INTEGER     NOT NULL,
    token      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT move_markers_pkey PRIMARY KEY (tenant_id, token)
);

-- Every tenant transaction starts here, as the application's login,
-- before it takes the tenant's role. A writing transaction holds the
-- tenant's shared advisory lock to its end, so a move pauses the tenant's
-- writes by taking the lock exclusively: new writers wait in PostgreSQL,
-- and the ones in flight finish first. Readers do not wait. The fence is
-- read after the lock is granted (a new snapshot for each statement of a
-- VOLATILE function), so a writer that waited through a cut-over sees it.
CREATE FUNCTION shared.enter_tenant(p_tenant integer, p_writes boolean)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_writes THEN
        PERFORM pg_advisory_xact_lock_shared(16756, p_tenant);
    END IF;
    IF EXISTS (SELECT 1 FROM public.tenant_fences WHERE tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'tenant % is not served by this cluster now', p_tenant
            USING ERRCODE = 'AT001';
    END IF;
END;
$$;

COMMENT ON FUNCTION shared.enter_tenant(integer, boolean) IS
    'Starts a tenant transaction: the shared move lock for writers (16756, tenant id), then the fence check.';
