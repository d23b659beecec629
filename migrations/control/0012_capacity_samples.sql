-- Atrium control migration 0012: one size sample per tenant and day, taken
-- by the scheduled maintain, for `atrium capacity`'s growth over 7 and 30
-- days. Bounded: samples older than 35 days are deleted as new ones come.
CREATE TABLE public.capacity_samples (
    tenant_id   INTEGER NOT NULL
                        CONSTRAINT capacity_samples_tenant_id_fkey
                        REFERENCES public.tenants (id) ON DELETE CASCADE,
    sampled_on  DATE    NOT NULL,
    -- tables, indexes and TOAST of the tenant's schema
    total_bytes BIGINT  NOT NULL,
    -- the planner's estimate, summed over its tables
    rows        BIGINT  NOT NULL,
    CONSTRAINT capacity_samples_pkey PRIMARY KEY (tenant_id, sampled_on)
);
