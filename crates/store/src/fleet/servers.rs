//! The server processes serving now (`public.servers`): each renews its
//! row every [`HEARTBEAT`]; a row older than [`LIVE_FOR`] is a server that
//! stopped or lost the database. The count is what a server divides each
//! tenant's limits by.

use std::time::Duration;

use crate::Database;

/// How often a server renews its row.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A server whose row is older than this no longer counts: three missed
/// heartbeats.
pub const LIVE_FOR: Duration = Duration::from_secs(6);

/// Renews `server_id`'s row and returns how many servers are live, this
/// one included (so at least 1). Rows of servers gone for an hour are
/// removed on the way.
pub async fn heartbeat(session: &tokio_postgres::Client, server_id: &str) -> anyhow::Result<usize> {
    let live: i64 = session
        .query_one(
            "WITH renewed AS (
               INSERT INTO public.servers (server_id) VALUES ($1)
               ON CONFLICT (server_id) DO UPDATE SET heartbeat_at = now()),
             gone AS (
               DELETE FROM public.servers WHERE heartbeat_at < now() - interval '1 hour')
             SELECT 1 + count(*) FROM public.servers
              WHERE server_id <> $1 AND heartbeat_at > now() - make_interval(secs => $2)",
            &[&server_id, &LIVE_FOR.as_secs_f64()],
        )
        .await?
        .get(0);
    Ok(live.max(1) as usize)
}

/// Removes a stopping server's row: the others take its share at their
/// next heartbeat.
pub async fn withdraw(db: &Database, server_id: &str) -> anyhow::Result<()> {
    db.connection()
        .await?
        .execute(
            "DELETE FROM public.servers WHERE server_id = $1",
            &[&server_id],
        )
        .await?;
    Ok(())
}
