//! `LISTEN` for an in-process cache: one dedicated session per channel and
//! database, reconnected for as long as the cache lives, with a heartbeat
//! that catches a connection that died silently.
//!
//! A cache built on it trusts itself only while it is told it is
//! listening: everything committed before a heartbeat is answered has
//! been received (notifications arrive in order on the session), and on
//! either edge (connected, lost) whatever it holds may be stale.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use crate::Database;

/// How often the listener's session proves it is alive, and how long it
/// may take.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a cache does with its listener's news.
pub(crate) trait Listening: Send + Sync + 'static {
    /// A notification's payload arrived.
    fn changed(&self, payload: &str);
    /// Drops everything cached.
    fn forget_all(&self);
    /// Whether the cache may be trusted: set while the listener receives.
    fn listening_flag(&self) -> &AtomicBool;
}

/// The listener has started (`on`) or stopped receiving: either way what
/// is cached may be stale. Forgotten before it is trusted again, and
/// distrusted before it is forgotten, so no lookup in between trusts it.
fn set_listening<L: Listening>(listener: &L, on: bool) {
    if on {
        listener.forget_all();
        listener.listening_flag().store(true, Ordering::Release);
    } else {
        listener.listening_flag().store(false, Ordering::Release);
        listener.forget_all();
    }
}

/// Listens on `channel` of `db` for `owner` until `owner` is gone.
/// `application` names the session in `pg_stat_activity`; `channel` and
/// `application` are fixed names of this program, never input.
pub(crate) fn spawn<L: Listening>(
    db: Database,
    channel: &'static str,
    application: &'static str,
    owner: Weak<L>,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(listener) = owner.upgrade() else {
                return;
            };
            match listen_once(&db, channel, application, &*listener).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "change listener lost its connection")
                }
            }
            set_listening(&*listener, false);
            drop(listener);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// Listens until the connection ends.
async fn listen_once<L: Listening>(
    db: &Database,
    channel: &str,
    application: &str,
    listener: &L,
) -> anyhow::Result<()> {
    let (client, mut connection) = db.raw_connection().await?;
    let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = sender.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listener connection ended");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!(
            "SET application_name = '{application}'; LISTEN {channel}"
        ))
        .await?;
    // Anything cached before LISTEN took effect may be stale.
    set_listening(listener, true);
    tracing::debug!(channel, "listening for changes");
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(payload) => listener.changed(&payload),
                None => break Ok(()),
            },
            _ = heartbeat.tick() => {
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(anyhow::Error::from(e)),
                    Err(_) => break Err(anyhow::anyhow!("no heartbeat answer within {HEARTBEAT_TIMEOUT:?}")),
                }
            }
        }
    };
    driver.abort();
    drop(client);
    ended
}
