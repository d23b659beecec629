-- Atrium tenant migration 0003: servers keep signed-in sessions in memory
-- and forget one as soon as it may have changed: these triggers send
-- `NOTIFY atrium_sessions` (shared.notify_session_changed, control
-- migration 0015) when a session is revoked, cut short or deleted while
-- live, and on any change to a user (role, deactivation, deletion, name).
-- Touching a session's idle clock notifies nobody.

CREATE TRIGGER sessions_notify_changed AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.token IS DISTINCT FROM NEW.token)
    EXECUTE FUNCTION shared.notify_session_changed('user_id');

CREATE TRIGGER sessions_notify_deleted AFTER DELETE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION shared.notify_session_changed('user_id');

CREATE TRIGGER users_notify_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW
    EXECUTE FUNCTION shared.notify_session_changed('id');
