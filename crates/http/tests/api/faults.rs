//! PostgreSQL restarting under load: 503s while it is down, then service
//! again without restarting the server, with the tenant cache and its
//! LISTEN back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atrium_store::connection::embedded::ThrowawayCluster;
use reqwest::StatusCode;

use crate::helpers::{PLATFORM_TOKEN, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_gives_503s_then_service_without_a_server_restart() {
    // A cluster of this test's own: restarting the shared one would
    // disturb every other test.
    let cluster = Arc::new(
        tokio::task::spawn_blocking(ThrowawayCluster::start)
            .await
            .unwrap()
            .unwrap(),
    );
    let request_timeout = Duration::from_secs(10);
    let app = TestApp::spawn_over(
        atrium_testkit::migrated_database_at(&cluster.postgres_database_url()).await,
        atrium_http::ServerSettings {
            platform_token: Some(PLATFORM_TOKEN.into()),
            request_timeout,
            ..Default::default()
        },
    )
    .await;
    let t = app.create_tenant("alpha").await;
    let (client, base) = (app.client.clone(), format!("http://{}", app.addr));
    let host = format!("alpha.localhost:{}", app.addr.port());
    let token = t.admin_token.clone();
    let me = {
        let (client, base, host, token) = (client.clone(), base.clone(), host.clone(), token);
        move || {
            client
                .get(format!("{base}/api/v1/me"))
                .header("host", host.clone())
                .bearer_auth(token.clone())
                .send()
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (me, stop) = (me.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let status = me().await.map(|r| r.status().as_u16()).unwrap_or(0);
                seen.push((status, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }
    let readiness = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                    statuses.push(r.status().as_u16());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart(Duration::from_secs(2)))
        .await
        .unwrap()
        .unwrap();
    // Served again, by the same server process.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if me().await.map(|r| r.status()).ok() == Some(StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in load {
        all.extend(task.await.unwrap());
    }
    let readiness = readiness.await.unwrap();
    assert!(
        all.iter().all(|(s, _)| *s == 200 || *s == 503),
        "only 200 and 503: {:?}",
        all.iter()
            .map(|(s, _)| s)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(all.iter().any(|(s, _)| *s == 503), "the outage was seen");
    assert!(all.iter().any(|(s, _)| *s == 200));
    let slowest = all.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        slowest < request_timeout + Duration::from_secs(2),
        "{slowest:?}"
    );
    assert!(readiness.contains(&503), "{readiness:?}");
    assert_eq!(readiness.last(), Some(&200), "{readiness:?}");

    // The tenant cache listens again: a suspension made in psql reaches
    // the server well before its 30 s expiry.
    assert_eq!(me().await.unwrap().status(), StatusCode::OK);
    app.sql_execute("UPDATE public.tenants SET status = 'suspended' WHERE subdomain = 'alpha'")
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if me().await.unwrap().status() == StatusCode::FORBIDDEN {
            break;
        }
        assert!(Instant::now() < deadline, "the suspension did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
