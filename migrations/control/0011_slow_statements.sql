-- Atrium control migration 0011: each server's count of a tenant's
-- statements that ran past its slow-statement threshold in the last hour,
-- beside the other figures `atrium top` reads.
ALTER TABLE public.tenant_metrics
    ADD COLUMN slow_statements BIGINT NOT NULL DEFAULT 0;
