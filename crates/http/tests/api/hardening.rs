use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, send};

#[tokio::test]
async fn parallel_guesses_cannot_slip_past_the_login_limit() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let t = app.create_tenant("alpha").await;
    let mut guesses = Vec::new();
    for i in 0..30 {
        let (app, email) = (app.clone(), t.admin_email.clone());
        guesses.push(tokio::spawn(async move {
            app.tenant_request(Method::POST, "alpha", "/api/v1/auth/login")
                .json(&json!({"email": email, "password": format!("wrong-guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut unauthorized = 0;
    let mut limited = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(unauthorized, 10, "exactly the limit was tried");
    assert_eq!(limited, 20);
}

#[tokio::test]
async fn a_tenant_suspended_by_hand_in_psql_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    app.db
        .connection()
        .await
        .unwrap()
        .batch_execute("UPDATE public.tenants SET status = 'suspended' WHERE subdomain = 'alpha'")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = app
            .authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me")
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3), // slack for a loaded CI machine
            "still served after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn using_one_reset_token_ends_the_others() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for _ in 0..2 {
        send(
            app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
                .json(&json!({"email": t.admin_email})),
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let session = app.db.connection().await.unwrap();
    let bodies: Vec<String> = session
        .query(
            "SELECT body FROM public.outbox WHERE kind = 'password_reset' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let token = |body: &str| {
        body.split("token=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (token(&bodies[0]), token(&bodies[1]));
    let confirm = |token: &str| {
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset/confirm")
            .json(&json!({"token": token, "new_password": "a brand new password"}))
    };
    send(confirm(&second), StatusCode::NO_CONTENT).await;
    send(confirm(&first), StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn anonymous_floods_spend_their_own_allowance_not_the_tenants() {
    // Behind a proxy, so the flood and the users have addresses of their own.
    let app = std::sync::Arc::new(
        TestApp::spawn_with(atrium_http::ServerSettings {
            platform_token: Some(crate::helpers::PLATFORM_TOKEN.into()),
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        })
        .await,
    );
    let t = app.create_tenant("alpha").await;
    const NOISE: &str = "203.0.113.7";
    // A colleague behind the noisy address whose token worked a moment ago.
    let (_, colleague) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    send(
        app.authed(Method::GET, "alpha", &colleague, "/api/v1/me")
            .header("x-forwarded-for", NOISE),
        StatusCode::OK,
    )
    .await;
    // Token-less and garbage-token requests at the tenant, all at once
    // (well under the server's bound on requests in flight).
    let flood = futures::future::join_all((0..300).map(|i| {
        let app = app.clone();
        async move {
            let request = app
                .tenant_request(Method::GET, "alpha", "/api/v1/me")
                .header("x-forwarded-for", NOISE);
            let request = if i % 2 == 0 {
                request
            } else {
                request.bearer_auth(format!("garbage-{i}"))
            };
            request.send().await.unwrap().status()
        }
    }));
    let signed_in = futures::future::join_all((0..40).map(|i| {
        let app = app.clone();
        let (token, address) = if i % 4 == 0 {
            (colleague.clone(), NOISE)
        } else {
            (t.admin_token.clone(), "198.51.100.1")
        };
        async move {
            app.authed(Method::GET, "alpha", &token, "/api/v1/me")
                .header("x-forwarded-for", address)
                .send()
                .await
                .unwrap()
                .status()
        }
    }));
    let (flood, signed_in) = tokio::join!(flood, signed_in);
    assert!(
        signed_in.iter().all(|s| *s == StatusCode::OK),
        "signed-in users are served: {signed_in:?}"
    );
    let limited = flood
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited > 0, "the flood runs out of its allowance");
    assert!(
        flood
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS)
    );
    // Another address signs in as usual.
    app.login("alpha", &t.admin_email, crate::helpers::ADMIN_PASSWORD)
        .await;
}

#[tokio::test]
async fn password_reset_requests_and_wrong_current_passwords_are_rate_limited() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let reset = || {
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
            .json(&json!({"email": "nobody@alpha.example"}))
    };
    for _ in 0..5 {
        send(reset(), StatusCode::ACCEPTED).await;
    }
    crate::helpers::send_problem(reset(), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let change = || {
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/me/password")
            .json(
                &json!({"current_password": "wrong-password", "new_password": "another-long-one"}),
            )
    };
    for _ in 0..10 {
        crate::helpers::send_problem(
            change(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    crate::helpers::send_problem(change(), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

fn limited(settings: atrium_http::ServerSettings) -> atrium_http::ServerSettings {
    atrium_http::ServerSettings {
        platform_token: Some(crate::helpers::PLATFORM_TOKEN.into()),
        ..settings
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(limited(atrium_http::ServerSettings {
        header_read_timeout: Duration::from_secs(1),
        ..Default::default()
    }))
    .await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buffer))
        .await
        .expect("the server closed the connection");
    // Closed (0 bytes or reset), perhaps after a 408 answer.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buffer[..n])
        ),
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_the_others_served() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(limited(atrium_http::ServerSettings {
        max_connections: 3,
        ..Default::default()
    }))
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    // Accepted in order: the first three take the places.
    let mut extra = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buffer))
        .await
        .expect("the extra connection is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(idle);
    // Once the server has seen them go, new connections are served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.request(Method::GET, "/healthz").send().await {
            Ok(r) if r.status() == StatusCode::OK => break,
            _ => {
                assert!(Instant::now() < deadline, "no connection served again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_503_with_retry_after() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(limited(atrium_http::ServerSettings {
            max_requests_in_flight: 1,
            ..Default::default()
        }))
        .await,
    );
    let t = app.create_tenant("alpha").await;
    // An import whose body trickles in (for seconds) holds the one place.
    let trickle = futures::stream::unfold(0, |sent| async move {
        if sent == 12 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let chunk = if sent == 0 {
            "first_name,last_name\n".to_owned()
        } else {
            format!("Ann{sent},Lee\n")
        };
        Some((Ok::<_, std::io::Error>(chunk), sent + 1))
    });
    let importing = {
        let (app, token) = (app.clone(), t.admin_token.clone());
        tokio::spawn(async move {
            app.authed(Method::POST, "alpha", &token, "/api/v1/contacts/import")
                .header("content-type", "text/csv")
                .body(reqwest::Body::wrap_stream(trickle))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Another request is turned away while the import runs. (Asked too
    // early, before the import arrives, a request would take the place
    // itself; so the first try waits a moment.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = app
            .authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me")
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(Instant::now() < deadline, "never turned away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(response.headers()["retry-after"], "1");
    send(app.request(Method::GET, "/healthz"), StatusCode::OK).await;
    assert_eq!(importing.await.unwrap(), StatusCode::OK);
    send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn cookies_are_secure_when_a_trusted_proxy_says_the_browser_used_https() {
    let set_cookie = async |app: &TestApp, proto: Option<&str>| {
        let mut request = app.tenant_request(Method::GET, "alpha", "/sign-in");
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let proxied = TestApp::spawn_with(atrium_http::ServerSettings {
        platform_token: Some(crate::helpers::PLATFORM_TOKEN.into()),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..Default::default()
    })
    .await;
    proxied.create_tenant("alpha").await;
    assert!(
        set_cookie(&proxied, Some("https"))
            .await
            .ends_with("; Secure")
    );
    assert!(!set_cookie(&proxied, Some("http")).await.contains("Secure"));
    assert!(!set_cookie(&proxied, None).await.contains("Secure"));
    // From a peer that is not a trusted proxy, the header means nothing.
    let direct = TestApp::spawn().await;
    direct.create_tenant("alpha").await;
    assert!(!set_cookie(&direct, Some("https")).await.contains("Secure"));
}
