-- Atrium control migration 0006: spare tenant schemas, made and migrated
-- ahead of need, so that creating a tenant renames one instead of running
-- every migration. Spare n is schema `spare_<n>` with role
-- `<prefix>_spare_<n>`; `migrate` keeps them at the newest version.
CREATE TABLE public.spare_schemas (
    id             SERIAL      NOT NULL
                               CONSTRAINT spare_schemas_pkey PRIMARY KEY,
    schema_version INTEGER     NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
