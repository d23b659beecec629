//! Time a request spends waiting on PostgreSQL, summed over its tenant
//! transactions: the "database time" of the per-tenant metrics. A
//! task-local, so no handler has to carry it.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DB_TIME: Cell<Duration>;
}

/// Runs `work`, returning its output and the database time it spent.
pub async fn measured<F: Future>(work: F) -> (F::Output, Duration) {
    DB_TIME
        .scope(Cell::new(Duration::ZERO), async {
            let output = work.await;
            (output, DB_TIME.with(Cell::get))
        })
        .await
}

/// Awaits a database call, counting its time for the request (if any).
pub(crate) async fn timed<F: Future>(call: F) -> F::Output {
    let started = Instant::now();
    let output = call.await;
    let _ = DB_TIME.try_with(|t| t.set(t.get() + started.elapsed()));
    output
}
