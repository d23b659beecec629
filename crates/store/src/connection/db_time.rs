//! Time a request spends waiting on PostgreSQL, summed over its tenant
//! transactions: the "database time" of the per-tenant metrics; the
//! statements of it that ran past the slow-statement threshold; and the
//! request's id, which its tenant transactions show in `pg_stat_activity`.
//! A task-local, so no handler has to carry them.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

// Tokio's clock, which tests can pause; the same as the system's otherwise.
use tokio::time::Instant;

/// The request's database time: the time at least one call was waiting.
/// Calls sent together (pipelined on one connection) overlap, and their
/// overlap counts once.
#[derive(Default)]
struct DbClock {
    total: Cell<Duration>,
    in_flight: Cell<u32>,
    busy_since: Cell<Option<Instant>>,
    slow_statements: Cell<u32>,
    slow_statement: Duration,
    /// Only characters safe in `application_name` and in SQL text.
    request_id: Option<String>,
}

/// What a request asked of PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbUsage {
    pub time: Duration,
    /// Tenant statements that ran at least the request's slow-statement
    /// threshold.
    pub slow_statements: u32,
}

/// A request id as it may appear in `application_name` (at most 63 bytes,
/// with the schema name before it) and in the setup SQL: a client's own
/// `X-Request-Id` of other characters, or longer, is left out.
fn usable_request_id(id: &str) -> Option<String> {
    let usable = !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    usable.then(|| id.to_owned())
}

/// The id of the request this task serves, if it is a request and its id
/// is usable.
pub(crate) fn request_id() -> Option<String> {
    DB_TIME
        .try_with(|clock| clock.request_id.clone())
        .ok()
        .flatten()
}

impl DbClock {
    fn start(&self) {
        if self.in_flight.get() == 0 {
            self.busy_since.set(Some(Instant::now()));
        }
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn stop(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        if self.in_flight.get() == 0
            && let Some(since) = self.busy_since.take()
        {
            self.total.set(self.total.get() + since.elapsed());
        }
    }
}

tokio::task_local! {
    static DB_TIME: DbClock;
}

/// Runs `work` for request `request_id`, returning its output and what it
/// asked of the database; its tenant statements that take `slow_statement`
/// or longer are logged and counted.
pub async fn measured<F: Future>(
    request_id: &str,
    slow_statement: Duration,
    work: F,
) -> (F::Output, DbUsage) {
    let clock = DbClock {
        request_id: usable_request_id(request_id),
        slow_statement,
        ..Default::default()
    };
    DB_TIME
        .scope(clock, async {
            let output = work.await;
            let usage = DB_TIME.with(|clock| DbUsage {
                time: clock.total.get(),
                slow_statements: clock.slow_statements.get(),
            });
            (output, usage)
        })
        .await
}

/// Stops its call's clock even when the call is dropped half-way.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = DB_TIME.try_with(DbClock::stop);
    }
}

/// Awaits a database call, counting its time for the request (if any).
pub(crate) async fn timed<F: Future>(call: F) -> F::Output {
    let running = DB_TIME.try_with(DbClock::start).ok().map(|()| Running);
    let output = call.await;
    drop(running);
    output
}

/// Awaits one tenant statement like [`timed`], and notes its time (see
/// [`note_statement`]).
pub(crate) async fn timed_statement<F: Future>(schema: &str, sql: &str, call: F) -> F::Output {
    let started = std::time::Instant::now();
    let output = timed(call).await;
    note_statement(schema, sql, started.elapsed());
    output
}

/// In a request, a tenant statement that took the request's threshold or
/// longer is logged (in the request's span: its id and tenant) and
/// counted.
pub(crate) fn note_statement(schema: &str, sql: &str, elapsed: Duration) {
    let slow = DB_TIME
        .try_with(|clock| {
            let slow = elapsed >= clock.slow_statement;
            if slow {
                clock
                    .slow_statements
                    .set(clock.slow_statements.get().saturating_add(1));
            }
            slow
        })
        .unwrap_or(false);
    if slow {
        let statement: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        tracing::warn!(
            schema,
            elapsed_ms = elapsed.as_millis() as u64,
            statement = %statement.chars().take(200).collect::<String>(),
            "slow statement"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_sent_together_count_their_overlap_once() {
        let nap = || timed(tokio::time::sleep(Duration::from_millis(50)));
        let ((), spent) = measured("r1", Duration::from_secs(1), async {
            tokio::join!(nap(), nap(), nap());
        })
        .await;
        assert_eq!(
            spent.time,
            Duration::from_millis(50),
            "three overlapping 50 ms calls are 50 ms of database time, not 150"
        );
        let ((), spent) = measured("r2", Duration::from_secs(1), async {
            nap().await;
            nap().await;
        })
        .await;
        assert_eq!(
            spent.time,
            Duration::from_millis(100),
            "one after the other"
        );
    }

    #[test]
    fn only_plain_request_ids_reach_the_database() {
        let uuid = "0b6f7c1e-8d4a-4f7e-9a51-2f0c7d7e3b10";
        assert_eq!(usable_request_id(uuid).as_deref(), Some(uuid));
        for bad in ["", "a'b", "a b", "x;DROP", "é", &"x".repeat(41)] {
            assert_eq!(usable_request_id(bad), None, "{bad}");
        }
    }
}
