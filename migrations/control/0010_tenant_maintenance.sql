-- Atrium control migration 0010: a tenant in maintenance.
--
-- The operator takes one tenant out of service for work that needs it
-- quiet (a migration that locks its tables): its API answers 503
-- `maintenance` with Retry-After, its pages a maintenance page, on every
-- server within a second (the tenants trigger notifies them), while the
-- other tenants serve. The row says who turned it on, when, and what to
-- tell the tenant's people.
ALTER TABLE public.tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE public.tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('active', 'suspended', 'maintenance'));
ALTER TABLE public.tenants
    ADD COLUMN maintenance_message TEXT,
    ADD COLUMN maintenance_by      TEXT,
    ADD COLUMN maintenance_since   TIMESTAMPTZ;

COMMENT ON COLUMN public.tenants.maintenance_by IS
    'Who put the tenant in maintenance (the platform API, or the operator''s login on the command line).';
