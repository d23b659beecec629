//! Time a request spends waiting on PostgreSQL, summed over its tenant
//! transactions: the "database time" of the per-tenant metrics. A
//! task-local, so no handler has to carry it.

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

/// Runs `work`, returning its output and the database time it spent.
pub async fn measured<F: Future>(work: F) -> (F::Output, Duration) {
    DB_TIME
        .scope(DbClock::default(), async {
            let output = work.await;
            (output, DB_TIME.with(|clock| clock.total.get()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_sent_together_count_their_overlap_once() {
        let nap = || timed(tokio::time::sleep(Duration::from_millis(50)));
        let ((), spent) = measured(async {
            tokio::join!(nap(), nap(), nap());
        })
        .await;
        assert_eq!(
            spent,
            Duration::from_millis(50),
            "three overlapping 50 ms calls are 50 ms of database time, not 150"
        );
        let ((), spent) = measured(async {
            nap().await;
            nap().await;
        })
        .await;
        assert_eq!(spent, Duration::from_millis(100), "one after the other");
    }
}
