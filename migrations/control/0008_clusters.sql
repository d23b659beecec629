-- Atrium control migration 0008: the data clusters.
--
-- Tenants can live on several PostgreSQL servers (clusters). The home
-- database, which keeps this registry, is the cluster named `default`.
-- The operator declares the others in atrium.toml or the environment
-- (their addresses and secrets never enter the registry); this table
-- records each cluster's name and whether new tenants may be placed on
-- it, and every tenant's row names its cluster.
CREATE TABLE public.clusters (
    name       TEXT        NOT NULL
                           CONSTRAINT clusters_pkey PRIMARY KEY
                           CONSTRAINT clusters_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    accepting  BOOLEAN     NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO public.clusters (name) VALUES ('default');

-- Every tenant's cluster is a recorded one (today: `default`).
INSERT INTO public.clusters (name)
    SELECT DISTINCT cluster FROM public.tenants ON CONFLICT DO NOTHING;
ALTER TABLE public.tenants
    ADD CONSTRAINT tenants_cluster_fkey FOREIGN KEY (cluster) REFERENCES public.clusters (name);
CREATE INDEX idx_tenants_cluster ON public.tenants (cluster);
