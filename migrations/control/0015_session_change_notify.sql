-- Atrium control migration 0015: a change that can end a session, or
-- change who its user is, notifies the servers' session caches, whoever
-- makes it (Atrium, or an operator in psql). The payload is
-- '<schema> <user id>'; the trigger's argument names the row's column
-- that holds the user id (`id` on users, `user_id` on sessions). A
-- notification can only make a server read a session again, never trust
-- one, so anyone able to send it on this channel gains nothing.
CREATE FUNCTION shared.notify_session_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('atrium_sessions',
                      TG_TABLE_SCHEMA || ' ' || (to_jsonb(OLD) ->> TG_ARGV[0]));
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shared.notify_session_changed() IS
    'Trigger on tenant users and sessions: NOTIFY atrium_sessions ''<schema> <user id>'' (the column named by the argument).';
