-- Atrium control migration 0003: every change to a tenant row notifies the
-- servers' tenant caches, whoever makes it (Atrium, or an operator in
-- psql). The payload is the tenant id.
CREATE FUNCTION shared.notify_tenant_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('atrium_tenants', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_notify_changed
    AFTER INSERT OR UPDATE OR DELETE ON public.tenants
    FOR EACH ROW EXECUTE FUNCTION shared.notify_tenant_changed();
