-- Atrium tenant migration 0001: the CRM tables.
--
-- Applied inside one transaction, with search_path = <schema>, extensions,
-- to the `template` schema and to every tenant schema tenant_<id>.
-- Therefore:
--   * tenant tables are NEVER schema-qualified here;
--   * shared objects are always qualified (shared.set_updated_at(),
--     shared.maintain_tenant_counters(), extensions.gin_trgm_ops);
--   * no types (enums, domains) and no functions are created: a type created
--     per schema has a different OID per tenant and breaks cached prepared
--     statements. text/varchar with CHECK instead.
-- The migrator creates schema_migrations itself.
--
-- Naming: <table>_pkey, <table>_<column>_key, <table>_<column>_fkey,
-- <table>_<what>_check, idx_<table>_<what>; trigger <table>_set_updated_at
-- and <table>_count_{insert,update,delete}.
-- FK indexes are full (FK actions and checks must see deleted rows too);
-- list indexes are partial WHERE deleted_at IS NULL.

-- ===========================================================================
-- users
-- ===========================================================================
CREATE TABLE users (
    id             SERIAL       NOT NULL
                                CONSTRAINT users_pkey PRIMARY KEY,
    email          VARCHAR(254) NOT NULL,
    password_hash  VARCHAR(60)  NOT NULL,
    first_name     VARCHAR(100) NOT NULL,
    last_name      VARCHAR(100) NOT NULL,
    role           VARCHAR(20)  NOT NULL
                                CONSTRAINT users_role_check
                                CHECK (role IN ('admin', 'manager', 'sales_rep', 'viewer')),
    permissions    JSONB        NOT NULL DEFAULT '{}'
                                CONSTRAINT users_permissions_check
                                CHECK (jsonb_typeof(permissions) = 'object'),
    active         BOOLEAN      NOT NULL DEFAULT true,
    email_verified BOOLEAN      NOT NULL DEFAULT false,
    last_login     TIMESTAMPTZ,
    created_by     INTEGER      CONSTRAINT users_created_by_fkey REFERENCES users (id),
    updated_by     INTEGER      CONSTRAINT users_updated_by_fkey REFERENCES users (id),
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    deleted_at     TIMESTAMPTZ
);

-- Unique on lower(email): Bob@x.com and bob@x.com are the same person.
-- Replaces the origin's UNIQUE (email) and idx_users_email.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- "Would this leave the tenant without an active admin?"
CREATE INDEX idx_users_role ON users (role) WHERE active AND deleted_at IS NULL;
CREATE INDEX idx_users_created_by ON users (created_by);
CREATE INDEX idx_users_updated_by ON users (updated_by);

-- ===========================================================================
-- sessions (not in the origin document); token holds the hex SHA-256
-- ===========================================================================
CREATE TABLE sessions (
    id           SERIAL      NOT NULL
                             CONSTRAINT sessions_pkey PRIMARY KEY,
    user_id      INTEGER     NOT NULL
                             CONSTRAINT sessions_user_id_fkey
                             REFERENCES users (id) ON DELETE CASCADE,
    token        VARCHAR(64) NOT NULL
                             CONSTRAINT sessions_token_key UNIQUE
                             CONSTRAINT sessions_token_check
                             CHECK (token ~ '^[0-9a-f]{64}$'),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,     -- absolute expiry
    revoked_at   TIMESTAMPTZ,
    user_agent   TEXT,
    ip           TEXT
);

CREATE INDEX idx_sessions_user_id ON sessions (user_id);
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);

-- ===========================================================================
-- password_reset_tokens (origin); token holds the hex SHA-256
-- ===========================================================================
CREATE TABLE password_reset_tokens (
    id         SERIAL       NOT NULL
                            CONSTRAINT password_reset_tokens_pkey PRIMARY KEY,
    user_id    INTEGER      NOT NULL
                            CONSTRAINT password_reset_tokens_user_id_fkey
                            REFERENCES users (id) ON DELETE CASCADE,
    token      VARCHAR(255) NOT NULL
                            CONSTRAINT password_reset_tokens_token_key UNIQUE
                            CONSTRAINT password_reset_tokens_token_check
                            CHECK (token ~ '^[0-9a-f]{64}$'),
    expires_at TIMESTAMPTZ  NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- (The origin's idx_password_reset_tokens_token duplicates the unique
-- constraint's index and is not created.)
CREATE INDEX idx_password_reset_tokens_user_id ON password_reset_tokens (user_id);
CREATE INDEX idx_password_reset_tokens_expires ON password_reset_tokens (expires_at);

-- ===========================================================================
-- companies (origin)
-- ===========================================================================
CREATE TABLE companies (
    id                SERIAL        NOT NULL
                                    CONSTRAINT companies_pkey PRIMARY KEY,
    name              VARCHAR(255)  NOT NULL,
    domain            VARCHAR(255),
    industry          VARCHAR(100),
    street            VARCHAR(255),
    city              VARCHAR(100),
    state             VARCHAR(100),
    country           VARCHAR(100),
    postal_code       VARCHAR(20),
    parent_company_id INTEGER       CONSTRAINT companies_parent_company_id_fkey
                                    REFERENCES companies (id) ON DELETE SET NULL,
    custom_fields     JSONB         NOT NULL DEFAULT '{}'
                                    CONSTRAINT companies_custom_fields_check
                                    CHECK (jsonb_typeof(custom_fields) = 'object'),
    company_size      VARCHAR(20),
    employee_count    INTEGER       CONSTRAINT companies_employee_count_check
                                    CHECK (employee_count >= 0),
    annual_revenue    NUMERIC(15,2),
    revenue_currency  VARCHAR(3)    NOT NULL DEFAULT 'USD'
                                    CONSTRAINT companies_revenue_currency_check
                                    CHECK (revenue_currency ~ '^[A-Z]{3}$'),
    created_by        INTEGER       NOT NULL
                                    CONSTRAINT companies_created_by_fkey REFERENCES users (id),
    updated_by        INTEGER       CONSTRAINT companies_updated_by_fkey REFERENCES users (id),
    created_at        TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ   NOT NULL DEFAULT now(),
    deleted_at        TIMESTAMPTZ,
    CONSTRAINT companies_parent_company_id_check CHECK (parent_company_id <> id)
);

-- FK indexes
CREATE INDEX idx_companies_parent_id ON companies (parent_company_id);
CREATE INDEX idx_companies_created_by ON companies (created_by);
CREATE INDEX idx_companies_updated_by ON companies (updated_by);
-- list indexes
CREATE INDEX idx_companies_created_at ON companies (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX idx_companies_name ON companies (name, id) WHERE deleted_at IS NULL;
-- q: case-insensitive prefix of name or domain (lower(x) LIKE 'abc%'), and
-- the exact `domain` filter (lower(domain) = lower($1)).
CREATE INDEX idx_companies_name_prefix ON companies (lower(name) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX idx_companies_domain ON companies (lower(domain) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX idx_companies_industry ON companies (industry) WHERE deleted_at IS NULL;
CREATE INDEX idx_companies_custom_fields ON companies USING gin (custom_fields jsonb_path_ops) WHERE deleted_at IS NULL;

-- ===========================================================================
-- contacts (origin) + stored full-text search vector
-- ===========================================================================
CREATE TABLE contacts (
    id            SERIAL       NOT NULL
                               CONSTRAINT contacts_pkey PRIMARY KEY,
    first_name    VARCHAR(100) NOT NULL,
    last_name     VARCHAR(100) NOT NULL,
    email         VARCHAR(254),
    phone         VARCHAR(20),
    company_id    INTEGER      CONSTRAINT contacts_company_id_fkey
                               REFERENCES companies (id) ON DELETE SET NULL,
    custom_fields JSONB        NOT NULL DEFAULT '{}'
                               CONSTRAINT contacts_custom_fields_check
                               CHECK (jsonb_typeof(custom_fields) = 'object'),
    deleted_at    TIMESTAMPTZ,
    created_by    INTEGER      NOT NULL
                               CONSTRAINT contacts_created_by_fkey REFERENCES users (id),
    updated_by    INTEGER      CONSTRAINT contacts_updated_by_fkey REFERENCES users (id),
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    -- Always query full-text search through this column
    -- (search_vector @@ to_tsquery('simple', ...)).
    search_vector tsvector     GENERATED ALWAYS AS (
                      to_tsvector('simple'::regconfig,
                                  coalesce(first_name, '') || ' ' ||
                                  coalesce(last_name, '') || ' ' ||
                                  coalesce(email, ''))
                  ) STORED
);

-- FK indexes
CREATE INDEX idx_contacts_company_id ON contacts (company_id);
CREATE INDEX idx_contacts_created_by ON contacts (created_by);
CREATE INDEX idx_contacts_updated_by ON contacts (updated_by);
-- list and search indexes
CREATE INDEX idx_contacts_created_at ON contacts (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_last_name ON contacts (last_name, id) WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_email ON contacts (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_search ON contacts USING gin (search_vector) WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_name_trgm ON contacts
    USING gin (lower(first_name || ' ' || last_name) extensions.gin_trgm_ops)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_email_trgm ON contacts
    USING gin (lower(email) extensions.gin_trgm_ops)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_contacts_custom_fields ON contacts USING gin (custom_fields jsonb_path_ops) WHERE deleted_at IS NULL;

-- ===========================================================================
-- pipeline_stages (Atrium): the tenant's configurable pipeline
-- ===========================================================================
CREATE TABLE pipeline_stages (
    id          SERIAL       NOT NULL
                             CONSTRAINT pipeline_stages_pkey PRIMARY KEY,
    name        VARCHAR(50)  NOT NULL
                             CONSTRAINT pipeline_stages_name_key UNIQUE,
    position    INTEGER      NOT NULL
                             CONSTRAINT pipeline_stages_position_check CHECK (position > 0),
    probability NUMERIC(5,2) NOT NULL
                             CONSTRAINT pipeline_stages_probability_check
                             CHECK (probability >= 0 AND probability <= 100),
    kind        TEXT         NOT NULL DEFAULT 'open'
                             CONSTRAINT pipeline_stages_kind_check
                             CHECK (kind IN ('open', 'won', 'lost')),
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    -- Deferred, so stages can be renumbered by several UPDATEs in one
    -- transaction. (Not usable as an ON CONFLICT arbiter.)
    CONSTRAINT pipeline_stages_position_key UNIQUE (position) DEFERRABLE INITIALLY DEFERRED
);

-- ===========================================================================
-- deals (origin, with TIMESTAMPTZ, soft delete, stage -> pipeline_stages)
-- ===========================================================================
CREATE TABLE deals (
    id                  SERIAL       NOT NULL
                                     CONSTRAINT deals_pkey PRIMARY KEY,
    title               VARCHAR(200) NOT NULL,
    value               NUMERIC(12,2) CONSTRAINT deals_value_check CHECK (value >= 0),
    probability         NUMERIC(5,2) CONSTRAINT deals_probability_check
                                     CHECK (probability >= 0 AND probability <= 100),
    stage               VARCHAR(50)  NOT NULL
                                     CONSTRAINT deals_stage_fkey
                                     REFERENCES pipeline_stages (name)
                                     ON UPDATE CASCADE ON DELETE RESTRICT,
    primary_contact_id  INTEGER      CONSTRAINT deals_primary_contact_id_fkey
                                     REFERENCES contacts (id) ON DELETE SET NULL,
    company_id          INTEGER      CONSTRAINT deals_company_id_fkey
                                     REFERENCES companies (id) ON DELETE SET NULL,
    owner_id            INTEGER      CONSTRAINT deals_owner_id_fkey
                                     REFERENCES users (id) ON DELETE SET NULL,
    expected_close_date DATE,
    actual_close_date   DATE,
    deal_source         VARCHAR(100),
    description         TEXT,
    notes               TEXT,
    custom_fields       JSONB        NOT NULL DEFAULT '{}'
                                     CONSTRAINT deals_custom_fields_check
                                     CHECK (jsonb_typeof(custom_fields) = 'object'),
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    created_by          INTEGER      NOT NULL
                                     CONSTRAINT deals_created_by_fkey REFERENCES users (id),
    updated_by          INTEGER      CONSTRAINT deals_updated_by_fkey REFERENCES users (id),
    deleted_at          TIMESTAMPTZ
);

-- FK indexes (origin names)
CREATE INDEX idx_deals_primary_contact ON deals (primary_contact_id);
CREATE INDEX idx_deals_company ON deals (company_id);
CREATE INDEX idx_deals_owner ON deals (owner_id);
CREATE INDEX idx_deals_stage ON deals (stage);
CREATE INDEX idx_deals_created_by ON deals (created_by);
CREATE INDEX idx_deals_updated_by ON deals (updated_by);
-- list indexes (idx_deals_created_at is the keyset index)
CREATE INDEX idx_deals_created_at ON deals (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX idx_deals_expected_close ON deals (expected_close_date) WHERE deleted_at IS NULL;
CREATE INDEX idx_deals_title_trgm ON deals
    USING gin (lower(title) extensions.gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX idx_deals_custom_fields ON deals USING gin (custom_fields jsonb_path_ops) WHERE deleted_at IS NULL;

-- ===========================================================================
-- deal_contacts (origin)
-- ===========================================================================
CREATE TABLE deal_contacts (
    id         SERIAL      NOT NULL
                           CONSTRAINT deal_contacts_pkey PRIMARY KEY,
    deal_id    INTEGER     NOT NULL
                           CONSTRAINT deal_contacts_deal_id_fkey
                           REFERENCES deals (id) ON DELETE CASCADE,
    contact_id INTEGER     NOT NULL
                           CONSTRAINT deal_contacts_contact_id_fkey
                           REFERENCES contacts (id) ON DELETE CASCADE,
    role       VARCHAR(50),  -- e.g. 'decision_maker', 'influencer', 'user'
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by INTEGER     CONSTRAINT deal_contacts_created_by_fkey REFERENCES users (id),
    -- Replaces the origin's idx_deal_contacts_unique; also serves as the
    -- deal_id FK index (so idx_deal_contacts_deal_id is not created).
    CONSTRAINT deal_contacts_deal_id_contact_id_key UNIQUE (deal_id, contact_id)
);

CREATE INDEX idx_deal_contacts_contact_id ON deal_contacts (contact_id);
CREATE INDEX idx_deal_contacts_created_by ON deal_contacts (created_by);

-- ===========================================================================
-- activities (listed but not defined by the origin document)
-- ===========================================================================
CREATE TABLE activities (
    id           SERIAL       NOT NULL
                              CONSTRAINT activities_pkey PRIMARY KEY,
    kind         VARCHAR(20)  NOT NULL
                              CONSTRAINT activities_kind_check
                              CHECK (kind IN ('call', 'email', 'meeting', 'task', 'note')),
    subject      VARCHAR(255) NOT NULL,
    body         TEXT,
    due_at       TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    contact_id   INTEGER      CONSTRAINT activities_contact_id_fkey
                              REFERENCES contacts (id) ON DELETE SET NULL,
    company_id   INTEGER      CONSTRAINT activities_company_id_fkey
                              REFERENCES companies (id) ON DELETE SET NULL,
    deal_id      INTEGER      CONSTRAINT activities_deal_id_fkey
                              REFERENCES deals (id) ON DELETE SET NULL,
    owner_id     INTEGER      CONSTRAINT activities_owner_id_fkey
                              REFERENCES users (id) ON DELETE SET NULL,
    created_by   INTEGER      NOT NULL
                              CONSTRAINT activities_created_by_fkey REFERENCES users (id),
    updated_by   INTEGER      CONSTRAINT activities_updated_by_fkey REFERENCES users (id),
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    deleted_at   TIMESTAMPTZ
);

-- FK indexes
CREATE INDEX idx_activities_contact_id ON activities (contact_id);
CREATE INDEX idx_activities_company_id ON activities (company_id);
CREATE INDEX idx_activities_deal_id ON activities (deal_id);
CREATE INDEX idx_activities_owner_id ON activities (owner_id);
CREATE INDEX idx_activities_created_by ON activities (created_by);
CREATE INDEX idx_activities_updated_by ON activities (updated_by);
-- list indexes
CREATE INDEX idx_activities_created_at ON activities (created_at, id) WHERE deleted_at IS NULL;
-- open=true / due_before
CREATE INDEX idx_activities_open_due ON activities (due_at, id)
    WHERE deleted_at IS NULL AND completed_at IS NULL;

-- ===========================================================================
-- custom_field_definitions (Atrium)
-- ===========================================================================
CREATE TABLE custom_field_definitions (
    id         SERIAL       NOT NULL
                            CONSTRAINT custom_field_definitions_pkey PRIMARY KEY,
    entity     VARCHAR(20)  NOT NULL
                            CONSTRAINT custom_field_definitions_entity_check
                            CHECK (entity IN ('contact', 'company', 'deal')),
    key        VARCHAR(63)  NOT NULL
                            CONSTRAINT custom_field_definitions_key_check
                            CHECK (key ~ '^[a-z][a-z0-9_]*$'),
    label      VARCHAR(100) NOT NULL,
    type       VARCHAR(20)  NOT NULL
                            CONSTRAINT custom_field_definitions_type_check
                            CHECK (type IN ('text', 'number', 'boolean', 'date', 'select', 'multiselect')),
    options    JSONB        CONSTRAINT custom_field_definitions_options_check
                            CHECK (jsonb_typeof(options) = 'array'),
    required   BOOLEAN      NOT NULL DEFAULT false,
    created_by INTEGER      NOT NULL
                            CONSTRAINT custom_field_definitions_created_by_fkey REFERENCES users (id),
    updated_by INTEGER      CONSTRAINT custom_field_definitions_updated_by_fkey REFERENCES users (id),
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ
);

-- A key is unique per entity among definitions that are not deleted.
CREATE UNIQUE INDEX custom_field_definitions_entity_key_key
    ON custom_field_definitions (entity, key) WHERE deleted_at IS NULL;
CREATE INDEX idx_custom_field_definitions_created_by ON custom_field_definitions (created_by);
CREATE INDEX idx_custom_field_definitions_updated_by ON custom_field_definitions (updated_by);

-- ===========================================================================
-- audit_events (Atrium): one row per change to a CRM record
-- ===========================================================================
CREATE TABLE audit_events (
    id        BIGSERIAL   NOT NULL
                          CONSTRAINT audit_events_pkey PRIMARY KEY,
    entity    VARCHAR(20) NOT NULL
                          CONSTRAINT audit_events_entity_check
                          CHECK (entity IN ('company', 'contact', 'deal', 'activity')),
    entity_id INTEGER     NOT NULL,
    action    VARCHAR(10) NOT NULL
                          CONSTRAINT audit_events_action_check
                          CHECK (action IN ('create', 'update', 'delete', 'restore')),
    user_id   INTEGER     CONSTRAINT audit_events_user_id_fkey
                          REFERENCES users (id) ON DELETE SET NULL,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    changes   JSONB       NOT NULL DEFAULT '{}'
                          CONSTRAINT audit_events_changes_check
                          CHECK (jsonb_typeof(changes) = 'object')
);

CREATE INDEX idx_audit_events_entity ON audit_events (entity, entity_id, id DESC);
CREATE INDEX idx_audit_events_user_id ON audit_events (user_id);

-- ===========================================================================
-- updated_at triggers
-- ===========================================================================
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER companies_set_updated_at BEFORE UPDATE ON companies
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER contacts_set_updated_at BEFORE UPDATE ON contacts
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER pipeline_stages_set_updated_at BEFORE UPDATE ON pipeline_stages
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER deals_set_updated_at BEFORE UPDATE ON deals
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER activities_set_updated_at BEFORE UPDATE ON activities
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();
CREATE TRIGGER custom_field_definitions_set_updated_at BEFORE UPDATE ON custom_field_definitions
    FOR EACH ROW EXECUTE FUNCTION shared.set_updated_at();

-- ===========================================================================
-- Live-row counters in public.tenant_counters.
-- PostgreSQL allows transition tables only on single-event triggers without
-- a column list, hence three statement-level triggers per table.
-- ===========================================================================
CREATE TRIGGER users_count_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER users_count_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER users_count_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();

CREATE TRIGGER companies_count_insert AFTER INSERT ON companies
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER companies_count_update AFTER UPDATE ON companies
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER companies_count_delete AFTER DELETE ON companies
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();

CREATE TRIGGER contacts_count_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER contacts_count_update AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER contacts_count_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();

CREATE TRIGGER deals_count_insert AFTER INSERT ON deals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER deals_count_update AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER deals_count_delete AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();

CREATE TRIGGER activities_count_insert AFTER INSERT ON activities
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER activities_count_update AFTER UPDATE ON activities
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
CREATE TRIGGER activities_count_delete AFTER DELETE ON activities
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.maintain_tenant_counters();
