-- Atrium control migration 0013: the server processes serving now, each
-- renewing its row every two seconds. A tenant's request rate and
-- database-time budget are split between the live ones, so that N servers
-- still give a tenant its tier, not N times it. Unlogged: after a crash
-- the servers write their rows again within seconds.
CREATE UNLOGGED TABLE public.servers (
    server_id    TEXT        NOT NULL CONSTRAINT servers_pkey PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The application's login renews its server's row. On an installation
-- whose roles `atrium db roles` already made, the grant comes with the
-- table; `atrium db roles` gives it on a new one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atrium_application') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.servers TO atrium_application;
    END IF;
END
$$;
