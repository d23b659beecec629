-- Atrium control migration 0002: what a tenant transaction may reach in the
-- registry.
--
-- A tenant transaction runs as the tenant's data-only role
-- (<prefix>_tenant_<id>). Every tenant role is a member of one group role,
-- <prefix>_tenants, which may touch invitations and queue emails, and
-- row-level security limits it to the rows of the tenant whose role is
-- current. The tenant is derived from current_user, which a tenant role
-- cannot change (it is a member of no role it could switch to), never from
-- a setting a query could set.

DO $$
DECLARE
    grp text := (SELECT role_prefix FROM public.installation) || '_tenants';
    tenant_role text;
BEGIN
    EXECUTE format('CREATE ROLE %I NOLOGIN', grp);
    -- Tenants provisioned before this migration join the group too.
    FOR tenant_role IN
        SELECT r.rolname FROM public.tenants t CROSS JOIN public.installation i
          JOIN pg_roles r ON r.rolname = i.role_prefix || '_tenant_' || t.id
    LOOP
        EXECUTE format('GRANT %I TO %I', grp, tenant_role);
    END LOOP;
END;
$$;

-- The id of the tenant whose role is current, or NULL outside a tenant
-- transaction. Only members of this database's <prefix>_tenants group are
-- subject to the policies below, and each is a role named
-- <prefix>_tenant_<id>, so the suffix names the tenant. (SECURITY INVOKER
-- on purpose: inside a SECURITY DEFINER function current_user would be the
-- function's owner.)
CREATE FUNCTION shared.current_tenant_id() RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT substring(current_user::text FROM '_tenant_([1-9][0-9]*)$')::integer
$$;

COMMENT ON FUNCTION shared.current_tenant_id() IS
    'The tenant id encoded in the current tenant role''s name (<prefix>_tenant_<id>), or NULL.';

ALTER TABLE public.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.outbox ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    grp text := (SELECT role_prefix FROM public.installation) || '_tenants';
BEGIN
    EXECUTE format(
        'CREATE POLICY invitations_own_tenant ON public.invitations TO %I
           USING (tenant_id = shared.current_tenant_id())
           WITH CHECK (tenant_id = shared.current_tenant_id())', grp);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON public.invitations TO %I', grp);
    EXECUTE format('GRANT USAGE ON SEQUENCE public.invitations_id_seq TO %I', grp);

    -- Emails are queued by the tenant; reading and sending them is the
    -- operator's (and the sender's) business.
    EXECUTE format(
        'CREATE POLICY outbox_own_tenant ON public.outbox FOR INSERT TO %I
           WITH CHECK (tenant_id = shared.current_tenant_id())', grp);
    EXECUTE format('GRANT INSERT ON public.outbox TO %I', grp);
    EXECUTE format('GRANT USAGE ON SEQUENCE public.outbox_id_seq TO %I', grp);
END;
$$;
