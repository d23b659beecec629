use std::net::SocketAddr;

use reqwest::header::{AUTHORIZATION, HOST};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use atrium_http::ServerSettings;
use atrium_store::Database;
use atrium_testkit::{TestDatabase, migrated_database};

pub const PLATFORM_TOKEN: &str = "test-platform-token";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// A running server over its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Database,
    pub database_url: String,
    pub client: reqwest::Client,
    /// Dropped with the app, when the test ends.
    _database: std::sync::Arc<TestDatabase>,
}

/// A tenant made through the platform API, with its first admin signed in.
pub struct TestTenant {
    pub id: i64,
    pub subdomain: String,
    pub admin_email: String,
    pub admin_token: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(ServerSettings {
            platform_token: Some(PLATFORM_TOKEN.into()),
            ..Default::default()
        })
        .await
    }

    pub async fn spawn_with(settings: ServerSettings) -> Self {
        Self::spawn_over(migrated_database().await, settings).await
    }

    /// A server over `database` (one on a cluster of the test's own).
    pub async fn spawn_over(database: TestDatabase, settings: ServerSettings) -> Self {
        let fleet = atrium_store::Fleet::single(database.db.clone(), database.admin.clone());
        Self::spawn_fleet(database, fleet, settings).await
    }

    /// A server over the home `database` and the data clusters of `fleet`.
    pub async fn spawn_fleet(
        database: TestDatabase,
        fleet: atrium_store::Fleet,
        settings: ServerSettings,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            atrium_http::serve_fleet(listener, fleet, settings, std::future::pending())
                .await
                .expect("server")
        });
        Self {
            addr,
            db: database.db.clone(),
            database_url: database.url.clone(),
            _database: std::sync::Arc::new(database),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A second server over the same database (as behind a load
    /// balancer), with default settings; it lives as long as the test.
    pub async fn another_server(&self) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let db = self.db.clone();
        tokio::spawn(atrium_http::serve(
            listener,
            db.clone(),
            atrium_store::AdminDatabase::new(db),
            Default::default(),
            std::future::pending(),
        ));
        Self {
            addr,
            db: self.db.clone(),
            database_url: self.database_url.clone(),
            _database: self._database.clone(),
            client: self.client.clone(),
        }
    }

    /// A request to `path` on any host (health, platform).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("http://{}{path}", self.addr))
    }

    /// A request to `path` in tenant `subdomain` (by Host header).
    pub fn tenant_request(&self, method: Method, subdomain: &str, path: &str) -> RequestBuilder {
        self.request(method, path)
            .header(HOST, format!("{subdomain}.localhost:{}", self.addr.port()))
    }

    /// A signed-in request in tenant `subdomain`.
    pub fn authed(
        &self,
        method: Method,
        subdomain: &str,
        token: &str,
        path: &str,
    ) -> RequestBuilder {
        self.tenant_request(method, subdomain, path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    pub fn platform(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path)
            .header(AUTHORIZATION, format!("Bearer {PLATFORM_TOKEN}"))
    }

    /// A large-tier tenant: a test that is not about the tiers' limits
    /// must not depend on the machine's speed, and the small tier's budget
    /// of database time (100 ms a second) is spent quickly by a debug
    /// build sharing two cores with many tests at once.
    pub async fn create_tenant(&self, subdomain: &str) -> TestTenant {
        self.create_tenant_of_tier(subdomain, "large").await
    }

    /// A tenant of the given tier (tests of the tiers' limits ask for
    /// `small`).
    pub async fn create_tenant_of_tier(&self, subdomain: &str, tier: &str) -> TestTenant {
        let admin_email = format!("admin@{subdomain}.example");
        let created = self
            .platform(Method::POST, "/platform/v1/tenants")
            .json(&json!({
                "name": format!("{subdomain} Inc"),
                "subdomain": subdomain,
                "tier": tier,
                "admin": {"email": admin_email, "first_name": "Ada", "last_name": "Admin", "password": ADMIN_PASSWORD}
            }))
            .send()
            .await
            .unwrap();
        let created = expect_json(created, StatusCode::CREATED).await;
        let admin_token = self.login(subdomain, &admin_email, ADMIN_PASSWORD).await;
        TestTenant {
            id: created["id"].as_i64().unwrap(),
            subdomain: subdomain.to_owned(),
            admin_email,
            admin_token,
        }
    }

    pub async fn login(&self, subdomain: &str, email: &str, password: &str) -> String {
        let response = self
            .tenant_request(Method::POST, subdomain, "/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let body = expect_json(response, StatusCode::OK).await;
        body["token"].as_str().unwrap().to_owned()
    }

    /// Invites `email` with `role` as the tenant's admin and accepts it;
    /// returns the new user's id and session token.
    pub async fn add_user(&self, tenant: &TestTenant, email: &str, role: &str) -> (i64, String) {
        let invited = self
            .authed(
                Method::POST,
                &tenant.subdomain,
                &tenant.admin_token,
                "/api/v1/invitations",
            )
            .json(&json!({"email": email, "role": role}))
            .send()
            .await
            .unwrap();
        let invited = expect_json(invited, StatusCode::CREATED).await;
        let accepted = self
            .tenant_request(
                Method::POST,
                &tenant.subdomain,
                "/api/v1/invitations/accept",
            )
            .json(&json!({
                "token": invited["token"], "first_name": "Sam", "last_name": "User",
                "password": ADMIN_PASSWORD
            }))
            .send()
            .await
            .unwrap();
        let accepted = expect_json(accepted, StatusCode::CREATED).await;
        (
            accepted["user"]["id"].as_i64().unwrap(),
            accepted["token"].as_str().unwrap().to_owned(),
        )
    }
}

/// Asserts the status and returns the JSON body.
#[track_caller]
pub fn expect_json(
    response: Response,
    status: StatusCode,
) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let actual = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(actual, status, "at {caller}: body {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("at {caller}: not JSON ({e}): {text}"))
        }
    }
}

/// Asserts a problem document with this status and code; returns it.
#[track_caller]
pub fn expect_problem(
    response: Response,
    status: StatusCode,
    code: &'static str,
) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    expect_problem_at(response, status, code, caller)
}

/// The field names of a 422's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends `request`, asserts the status and returns the JSON body (`Null`
/// when empty).
#[track_caller]
pub fn send(
    request: RequestBuilder,
    status: StatusCode,
) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("at {caller}: {e}"));
        let actual = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(actual, status, "at {caller}: body {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("at {caller}: not JSON ({e}): {text}"))
        }
    }
}

/// Sends `request` and asserts a problem document with this status and code.
#[track_caller]
pub fn send_problem(
    request: RequestBuilder,
    status: StatusCode,
    code: &'static str,
) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("at {caller}: {e}"));
        expect_problem_at(response, status, code, caller).await
    }
}

/// Sends `request` and asserts a 422 `validation_failed` whose errors name
/// `field`; returns the problem.
#[track_caller]
pub fn send_invalid(
    request: RequestBuilder,
    field: &'static str,
) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("at {caller}: {e}"));
        let problem = expect_problem_at(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            caller,
        )
        .await;
        let fields = error_fields(&problem);
        assert!(
            fields.iter().any(|f| f == field),
            "at {caller}: {field} not named in {problem}"
        );
        problem
    }
}

/// A problem document: `application/problem+json`, this status and code,
/// and every member API.md names.
async fn expect_problem_at(
    response: Response,
    status: StatusCode,
    code: &'static str,
    caller: &'static std::panic::Location<'static>,
) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "at {caller}: body {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "at {caller}: body {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("at {caller}: not JSON ({e}): {text}"));
    assert_eq!(body["code"], code, "at {caller}: {text}");
    assert_eq!(body["status"], status.as_u16(), "at {caller}: {text}");
    for key in ["type", "title", "detail", "errors"] {
        assert!(
            body.get(key).is_some(),
            "at {caller}: {key} missing in {text}"
        );
    }
    body
}

/// Sends a fresh request from `make` every 20 ms until it answers `want`
/// or `within` has passed; returns the last status and body. Fails at once
/// on a 5xx: a server error is never a valid intermediate answer.
#[track_caller]
pub fn poll_until_status(
    make: impl Fn() -> RequestBuilder,
    want: StatusCode,
    within: std::time::Duration,
) -> impl std::future::Future<Output = (StatusCode, Value)> {
    let caller = std::panic::Location::caller();
    async move {
        let deadline = std::time::Instant::now() + within;
        loop {
            let response = make().send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(!status.is_server_error(), "at {caller}: {status} {text}");
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == want || std::time::Instant::now() >= deadline {
                return (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// An answer read off a raw TCP connection.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// `body` in HTTP/1.1 chunked transfer coding (64 KiB chunks), so the
/// server sees no `Content-Length`.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut coded = Vec::with_capacity(body.len() + body.len() / 8192 + 16);
    for chunk in body.chunks(64 * 1024) {
        coded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        coded.extend_from_slice(chunk);
        coded.extend_from_slice(b"\r\n");
    }
    coded.extend_from_slice(b"0\r\n\r\n");
    coded
}

impl TestApp {
    /// The `Host` value of tenant `subdomain`.
    pub fn host_of(&self, subdomain: &str) -> String {
        format!("{subdomain}.localhost:{}", self.addr.port())
    }

    /// A request with exactly this `Host` header.
    pub fn with_host(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.request(method, path).header(HOST, host)
    }

    /// Writes `head` (request line and headers, without the blank line; a
    /// `Connection: close` is added) and `body` on a new connection, and
    /// reads the whole answer. Lets a test send what reqwest will not (no
    /// `Host`, a chunked body). A write the server cuts short is ignored:
    /// the answer is what counts.
    pub async fn raw(&self, head: &str, body: &[u8]) -> RawResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
        let body = body.to_vec();
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            let _ = writer.write_all(&body).await;
            let _ = writer.flush().await;
            writer
        });
        let mut received = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) if received.windows(4).any(|w| w == b"\r\n\r\n") => {
                    eprintln!("raw read ended early: {e}");
                    break;
                }
                Err(e) => panic!("reading the raw answer: {e}"),
            }
        }
        drop(writing.await);
        parse_raw(&received)
    }

    /// One value from the database (as the superuser, outside any tenant).
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let session = self.db.connection().await.unwrap();
        session.query_one(sql, &[]).await.unwrap().get(0)
    }

    pub async fn sql_execute(&self, sql: &str) -> u64 {
        let session = self.db.connection().await.unwrap();
        session.execute(sql, &[]).await.unwrap()
    }

    /// The token of the newest password-reset email queued for `to`.
    pub async fn reset_token_from_outbox(&self, to: &str) -> String {
        let session = self.db.connection().await.unwrap();
        let row = session
            .query_one(
                "SELECT body FROM public.outbox WHERE kind = 'password_reset' AND lower(to_email) = lower($1)
                 ORDER BY id DESC LIMIT 1",
                &[&to],
            )
            .await
            .unwrap();
        let body: String = row.get(0);
        let (_, rest) = body
            .split_once("reset-password?token=")
            .unwrap_or_else(|| panic!("no reset link in {body}"));
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The tenant's own record through the platform API.
    pub async fn platform_tenant(&self, id: i64) -> Value {
        send(
            self.platform(Method::GET, &format!("/platform/v1/tenants/{id}")),
            StatusCode::OK,
        )
        .await
    }

    /// Invites `email` as `role`; returns the 201 body (with its token).
    pub async fn invite(&self, tenant: &TestTenant, email: &str, role: &str) -> Value {
        send(
            self.authed(
                Method::POST,
                &tenant.subdomain,
                &tenant.admin_token,
                "/api/v1/invitations",
            )
            .json(&json!({"email": email, "role": role})),
            StatusCode::CREATED,
        )
        .await
    }
}

fn parse_raw(received: &[u8]) -> RawResponse {
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {}", String::from_utf8_lossy(received)));
    let head = std::str::from_utf8(&received[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = received[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = decoded;
    }
    RawResponse {
        status,
        headers,
        body,
    }
}
