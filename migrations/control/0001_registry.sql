-- Atrium control migration 0001: the `public` registry.
--
-- Run once per database by the migrator (a superuser, or a role with
-- CREATEDB/CREATEROLE that owns the database), inside one transaction,
-- with search_path = public. The migrator creates public.schema_migrations
-- itself. Every name is written schema-qualified.

-- ---------------------------------------------------------------------------
-- Extensions live in their own schema, never in `public`, so an unqualified
-- name in tenant context (search_path = tenant_<id>, extensions) can never
-- resolve to a registry table.
-- ---------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Shared functions, so that tenant schemas create no functions (and no
-- types) of their own.
-- ---------------------------------------------------------------------------
CREATE SCHEMA shared;
GRANT USAGE ON SCHEMA shared TO PUBLIC;

-- BEFORE UPDATE ... FOR EACH ROW: keeps updated_at current.
-- now() always resolves to pg_catalog (it is searched first when not listed),
-- so no SET search_path is needed (it would cost a GUC save/restore per row).
CREATE FUNCTION shared.set_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shared.set_updated_at() IS
    'BEFORE UPDATE row trigger: sets NEW.updated_at = now().';

-- Live-row counters: shared.add_tenant_count() applies a delta to
-- public.tenant_counters; shared.maintain_tenant_counters() is the trigger
-- that computes the delta from the transition tables.
--
-- Why two functions: plpgsql compiles a trigger function separately for
-- every trigger (its cache key includes the trigger's OID), and caches the
-- plans of every expression in it per compiled copy. With 15 counter
-- triggers per tenant schema, a pooled backend that serves many tenants
-- keeps one copy per trigger per tenant. So the trigger function is kept as
-- small as possible, and the registry work lives in an ordinary function,
-- compiled once per backend. (Measured on PG 15: this halves the backend
-- memory held by the counters.)

-- Adds p_delta to the counter of table p_table for the tenant whose schema
-- is p_schema. No registry row (e.g. `template`) means do nothing. A tenant
-- without a counters row gets one (upsert), so no change is silently lost.
-- Not callable by anyone but its owner: the trigger function below runs as
-- that owner (SECURITY DEFINER).
CREATE FUNCTION shared.add_tenant_count(p_schema text, p_table text, p_delta bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_column    text;
    v_tenant_id integer;
BEGIN
    v_column := CASE p_table
                    WHEN 'users'      THEN 'users'
                    WHEN 'companies'  THEN 'companies'
                    WHEN 'contacts'   THEN 'contacts'
                    WHEN 'deals'      THEN 'deals'
                    WHEN 'activities' THEN 'activities'
                END;
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'shared.maintain_tenant_counters(): no counter for table %.%', p_schema, p_table;
    END IF;
    IF p_delta = 0 THEN
        RETURN;
    END IF;

    SELECT t.id INTO v_tenant_id
      FROM public.tenants AS t
     WHERE t.schema_name = p_schema;
    IF NOT FOUND THEN
        RETURN;               -- not a tenant schema (e.g. `template`)
    END IF;

    EXECUTE format(
        'INSERT INTO public.tenant_counters AS c (tenant_id, %1$I) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET %1$I = c.%1$I + EXCLUDED.%1$I',
        v_column)
    USING v_tenant_id, p_delta;
END;
$$;

REVOKE ALL ON FUNCTION shared.add_tenant_count(text, text, bigint) FROM PUBLIC;

COMMENT ON FUNCTION shared.add_tenant_count(text, text, bigint) IS
    'Adds a delta to public.tenant_counters for the tenant owning a schema; used by shared.maintain_tenant_counters().';

-- AFTER INSERT/UPDATE/DELETE ... FOR EACH STATEMENT with transition tables
-- (NEW TABLE AS new_rows, OLD TABLE AS old_rows) on the tenant tables users,
-- companies, contacts, deals, activities. Live rows: users that are active
-- and not deleted; other rows that are not deleted.
--
-- PostgreSQL refuses transition tables on a trigger with more than one event
-- and on UPDATE OF <columns>, so each counted table has three triggers
-- (insert, update, delete), and the update trigger fires for every UPDATE.
-- The delta comes from the transition tables alone; the registry is read
-- (and the counter row locked) only when it is not zero, so ordinary edits
-- never touch public. Statements in a branch that is never executed are
-- never planned, so the `users` branch (which names `active`) is only
-- planned for users' triggers.
CREATE FUNCTION shared.maintain_tenant_counters() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d bigint;
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        IF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO d FROM new_rows AS n WHERE n.active AND n.deleted_at IS NULL;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT -count(*) INTO d FROM old_rows AS o WHERE o.active AND o.deleted_at IS NULL;
        ELSE
            SELECT (SELECT count(*) FROM new_rows AS n WHERE n.active AND n.deleted_at IS NULL)
                 - (SELECT count(*) FROM old_rows AS o WHERE o.active AND o.deleted_at IS NULL)
              INTO d;
        END IF;
    ELSE
        IF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO d FROM new_rows AS n WHERE n.deleted_at IS NULL;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT -count(*) INTO d FROM old_rows AS o WHERE o.deleted_at IS NULL;
        ELSE
            SELECT (SELECT count(*) FROM new_rows AS n WHERE n.deleted_at IS NULL)
                 - (SELECT count(*) FROM old_rows AS o WHERE o.deleted_at IS NULL)
              INTO d;
        END IF;
    END IF;

    IF d <> 0 THEN
        PERFORM shared.add_tenant_count(TG_TABLE_SCHEMA, TG_TABLE_NAME, d);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shared.maintain_tenant_counters() IS
    'AFTER ... FOR EACH STATEMENT trigger with transition tables new_rows/old_rows on tenant users, companies, contacts, deals, activities: keeps public.tenant_counters equal to the number of live rows.';

-- ---------------------------------------------------------------------------
-- public.installation: one row describing this database's installation.
-- Tenant database roles are named <role_prefix>_tenant_<id>; the random
-- prefix keeps two databases on one server from colliding (roles are
-- server-wide).
-- ---------------------------------------------------------------------------
CREATE TABLE public.installation (
    id          BOOLEAN     NOT NULL DEFAULT true
                            CONSTRAINT installation_pkey PRIMARY KEY
                            CONSTRAINT installation_id_check CHECK (id),
    role_prefix TEXT        NOT NULL
                            CONSTRAINT installation_role_prefix_check
                            CHECK (role_prefix ~ '^[a-z][a-z0-9_]{0,31}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO public.installation (role_prefix)
VALUES ('atr_' || substr(md5(random()::text || clock_timestamp()::text), 1, 8));

-- ---------------------------------------------------------------------------
-- public.tenants: the registry (origin document), plus status, tier,
-- cluster and schema_version.
-- ---------------------------------------------------------------------------
CREATE TABLE public.tenants (
    id             SERIAL       NOT NULL
                                CONSTRAINT tenants_pkey PRIMARY KEY,
    name           VARCHAR(255) NOT NULL,
    subdomain      VARCHAR(63)  NOT NULL
                                CONSTRAINT tenants_subdomain_key UNIQUE
                                CONSTRAINT tenants_subdomain_check
                                CHECK (subdomain = lower(subdomain)),
    schema_name    VARCHAR(63)  NOT NULL
                                CONSTRAINT tenants_schema_name_key UNIQUE
                                CONSTRAINT tenants_schema_name_check
                                CHECK (schema_name ~ '^tenant_[1-9][0-9]*$'),
    status         TEXT         NOT NULL DEFAULT 'active'
                                CONSTRAINT tenants_status_check
                                CHECK (status IN ('active', 'suspended')),
    tier           TEXT         NOT NULL DEFAULT 'small'
                                CONSTRAINT tenants_tier_check
                                CHECK (tier IN ('small', 'medium', 'large')),
    cluster        TEXT         NOT NULL DEFAULT 'default',
    schema_version INTEGER      NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now()
);

COMMENT ON COLUMN public.tenants.schema_name IS
    'tenant_<id>; the subdomain lives only here, so it can be renamed without touching the schema.';
COMMENT ON COLUMN public.tenants.schema_version IS
    'Newest tenant migration applied to this tenant''s schema.';

CREATE INDEX idx_tenants_created_at ON public.tenants (created_at);

CREATE TRIGGER tenants_set_updated_at
    BEFORE UPDATE ON public.tenants
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();

-- ---------------------------------------------------------------------------
-- public.tenant_counters: live-row counts per tenant, kept current by
-- shared.maintain_tenant_counters(). fillfactor 50 leaves room for HOT
-- updates (only tenant_id is indexed).
-- ---------------------------------------------------------------------------
CREATE TABLE public.tenant_counters (
    tenant_id  INTEGER NOT NULL
                       CONSTRAINT tenant_counters_pkey PRIMARY KEY
                       CONSTRAINT tenant_counters_tenant_id_fkey
                       REFERENCES public.tenants (id) ON DELETE CASCADE,
    users      BIGINT  NOT NULL DEFAULT 0,
    companies  BIGINT  NOT NULL DEFAULT 0,
    contacts   BIGINT  NOT NULL DEFAULT 0,
    deals      BIGINT  NOT NULL DEFAULT 0,
    activities BIGINT  NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

-- ---------------------------------------------------------------------------
-- public.invitations (origin document); token holds the hex SHA-256 of the
-- token shown once to the inviter.
-- ---------------------------------------------------------------------------
CREATE TABLE public.invitations (
    id          SERIAL       NOT NULL
                             CONSTRAINT invitations_pkey PRIMARY KEY,
    tenant_id   INTEGER      NOT NULL
                             CONSTRAINT invitations_tenant_id_fkey
                             REFERENCES public.tenants (id) ON DELETE CASCADE,
    email       VARCHAR(254) NOT NULL,
    role        VARCHAR(20)  NOT NULL
                             CONSTRAINT invitations_role_check
                             CHECK (role IN ('admin', 'manager', 'sales_rep', 'viewer')),
    token       VARCHAR(255) NOT NULL
                             CONSTRAINT invitations_token_key UNIQUE
                             CONSTRAINT invitations_token_check
                             CHECK (token ~ '^[0-9a-f]{64}$'),
    expires_at  TIMESTAMPTZ  NOT NULL,
    accepted_at TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    invited_by  INTEGER,     -- users.id in the tenant's schema (no FK possible)
    metadata    JSONB        NOT NULL DEFAULT '{}'
                             CONSTRAINT invitations_metadata_check
                             CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now()
);

COMMENT ON COLUMN public.invitations.token IS
    'Lower-case hex SHA-256 of the invitation token; the token itself is shown once.';

-- One pending invitation per tenant and email. (The origin's predicate
-- `expires_at > CURRENT_TIMESTAMP` is not IMMUTABLE and is refused by
-- PostgreSQL; issuing a new invitation revokes an expired one instead.)
CREATE UNIQUE INDEX idx_invitations_tenant_email_active
    ON public.invitations (tenant_id, lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- FK index (the partial index above covers pending invitations only).
CREATE INDEX idx_invitations_tenant_id ON public.invitations (tenant_id);
CREATE INDEX idx_invitations_expires_at ON public.invitations (expires_at);

-- ---------------------------------------------------------------------------
-- public.outbox: queued emails (invitations, password resets).
-- ---------------------------------------------------------------------------
CREATE TABLE public.outbox (
    id               BIGSERIAL    NOT NULL
                                  CONSTRAINT outbox_pkey PRIMARY KEY,
    tenant_id        INTEGER      CONSTRAINT outbox_tenant_id_fkey
                                  REFERENCES public.tenants (id) ON DELETE CASCADE,
    to_email         VARCHAR(254) NOT NULL,
    kind             TEXT         NOT NULL
                                  CONSTRAINT outbox_kind_check
                                  CHECK (kind IN ('invitation', 'password_reset')),
    subject          TEXT         NOT NULL,
    body             TEXT         NOT NULL,
    token_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    attempts         INTEGER      NOT NULL DEFAULT 0
                                  CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    last_error       TEXT,
    next_attempt_at  TIMESTAMPTZ  NOT NULL DEFAULT now()
);

COMMENT ON COLUMN public.outbox.token_expires_at IS
    'When the token in body expires; the token is blanked in body once sent or expired.';

CREATE INDEX idx_outbox_unsent ON public.outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX idx_outbox_created_at ON public.outbox (created_at);
CREATE INDEX idx_outbox_tenant_id ON public.outbox (tenant_id);
