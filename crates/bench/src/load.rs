//! A closed-loop load generator: `clients` workers, each sending its next
//! request as soon as the last one answered, for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::percentile;

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadResult {
    pub per_second: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub errors: usize,
}

impl LoadResult {
    fn of(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            errors,
        }
    }
}

/// Runs `work(worker, iteration)` from `clients` workers for `duration`.
/// `work` returns whether the request succeeded.
pub(crate) async fn run<F, Fut>(clients: usize, duration: Duration, work: F) -> LoadResult
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..clients {
        let work = work.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if !work(worker, i).await {
                    errors += 1;
                }
                latencies.push(t.elapsed());
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.expect("load worker");
        latencies.extend(l);
        errors += e;
    }
    LoadResult::of(latencies, errors, started.elapsed())
}

/// One client sending `work(0, i)` at a steady `per_second`, whatever the
/// answers take (a request is not sent early to catch up): latency
/// without the client's own pace in it.
pub(crate) async fn paced<F, Fut>(per_second: u32, duration: Duration, work: F) -> LoadResult
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut i = 0;
    while started.elapsed() < duration {
        ticks.tick().await;
        let t = Instant::now();
        if !work(0, i).await {
            errors += 1;
        }
        latencies.push(t.elapsed());
        i += 1;
    }
    LoadResult::of(latencies, errors, started.elapsed())
}
