//! The HTTP adapter: axum routes over the services, the tenant resolved
//! from the `Host` header, every error a problem document.

mod anonymous;
mod auth;
mod connections;
mod contacts_csv;
mod custom_fields;
mod error;
mod extract;
mod health;
mod invitations;
mod list;
mod middleware;
mod openapi;
mod pipeline;
mod platform;
mod policy;
mod records;
pub mod tenant_metrics;
mod tls;
mod users;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use atrium_services::auth::{AuthSettings, LoginLimiter};
use atrium_services::invitations::Links;
use atrium_store::registry::directory::TenantDirectory;
use atrium_store::session_cache::SessionCache;
use atrium_store::{AdminDatabase, Database, Fleet};

pub use error::{ApiError, Problem};
pub use tls::TlsFiles;

/// What the server needs to know beyond its database.
#[derive(Clone)]
pub struct ServerSettings {
    pub base_domain: String,
    pub platform_token: Option<String>,
    pub public_url: Option<String>,
    pub request_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed (load balancers).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Open connections at most; past it new ones are closed at once, so
    /// idle or slow clients cannot use up the process's file descriptors.
    pub max_connections: usize,
    /// Requests being answered at most; past it 503 with `Retry-After`.
    pub max_requests_in_flight: usize,
    /// A client has this long to send a request's headers (slow-loris
    /// connections are closed).
    pub header_read_timeout: Duration,
    /// A tenant statement running this long or longer is logged with its
    /// request id and counted for its tenant (/metrics, `atrium top`).
    pub slow_statement: Duration,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate, reloaded
    /// on SIGHUP; plain HTTP without.
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("base_domain", &self.base_domain)
            .field(
                "platform_token",
                &self.platform_token.as_ref().map(|_| "********"),
            )
            .field("public_url", &self.public_url)
            .field("request_timeout", &self.request_timeout)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("max_connections", &self.max_connections)
            .field("max_requests_in_flight", &self.max_requests_in_flight)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("slow_statement", &self.slow_statement)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            base_domain: "localhost".into(),
            platform_token: None,
            public_url: None,
            request_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            header_read_timeout: Duration::from_secs(10),
            slow_statement: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// Open connections by default: well inside a default open-files limit
/// of 1,024 with the database sessions and files beside them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 768;
/// Requests answered at once by default: far more than the database
/// sessions can serve, so the bound only turns away a pile-up.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 512;

#[derive(Clone)]
pub(crate) struct AppState {
    /// The application's login: tenant work (through tenant roles) and
    /// registry reads.
    pub db: Database,
    /// Rights to change the schema: provisioning and the platform's writes.
    pub admin_db: AdminDatabase,
    /// Every data cluster's pools (the home database's are `db` and
    /// `admin_db`): tenant work runs on its tenant's cluster.
    pub fleet: Fleet,
    pub directory: Arc<TenantDirectory>,
    /// Signed-in sessions found recently, forgotten on any change.
    pub sessions: Arc<SessionCache>,
    pub settings: Arc<ServerSettings>,
    pub auth: Arc<AuthSettings>,
    pub links: Arc<Links>,
    pub limiter: Arc<LoginLimiter>,
    pub anonymous: Arc<anonymous::AnonymousLimits>,
    pub(crate) policies: Arc<policy::Policies>,
    /// Permits for requests being answered (`max_requests_in_flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<tenant_metrics::TenantMetrics>,
    /// The browser's CSV imports this server runs (`web::import`).
    pub imports: Arc<web::ImportJobs>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Atrium",
        description = "A multi-tenant CRM. Tenant paths (`/api/v1/...`) are answered by the \
                       organisation named by the Host header, `<subdomain>.<base-domain>`. \
                       Platform paths (`/platform/v1/...`) need the platform token. \
                       The order of keys in a JSON object carries no meaning.",
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["session", "platform"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Renews this server's row in the registry every two seconds and sizes
/// the tenants' limits to this server's share of them. Without the
/// registry (the database down) the last count stands: a server that
/// cannot see the others keeps its share rather than taking the whole tier
/// at once.
async fn share_limits_with_live_servers(
    db: Database,
    server_id: String,
    policies: Arc<policy::Policies>,
) {
    let mut ticks = tokio::time::interval(atrium_store::fleet::servers::HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A session of its own: under load the pool's sessions are all busy,
    // and a heartbeat queueing for one would make this server look gone
    // to the others exactly when the limits matter.
    let mut session = None;
    let mut failing = false;
    loop {
        ticks.tick().await;
        let beat = async {
            if session.is_none() {
                session = Some(db.dedicated_connection().await?);
            }
            let client = session.as_ref().expect("connected above");
            atrium_store::fleet::servers::heartbeat(client, &server_id).await
        };
        let beat = beat.await;
        if beat.is_err() {
            session = None;
        }
        match beat {
            Ok(servers) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("this server's row in the registry is renewed again");
                }
                metrics::gauge!("atrium_live_servers").set(servers as f64);
                if policies.set_servers(servers) {
                    tracing::info!(servers, "live servers share each tenant's limits");
                }
            }
            // Once per outage, not every two seconds.
            Err(e) if !std::mem::replace(&mut failing, true) => tracing::warn!(
                error = format!("{e:#}"),
                "renewing this server's row failed; keeping the last count of live servers"
            ),
            Err(_) => {}
        }
    }
}

/// Builds the application: every route, its OpenAPI document (from the
/// same routes, so they cannot drift), and the middleware.
pub async fn app(
    db: Database,
    admin_db: AdminDatabase,
    settings: ServerSettings,
    port: u16,
) -> anyhow::Result<Router> {
    build(
        Fleet::single(db, admin_db),
        settings,
        port,
        Default::default(),
        Default::default(),
    )
    .await
}

async fn build(
    fleet: Fleet,
    settings: ServerSettings,
    port: u16,
    metrics: Arc<tenant_metrics::TenantMetrics>,
    policies: Arc<policy::Policies>,
) -> anyhow::Result<Router> {
    health::prometheus();
    let (db, admin_db) = (fleet.home().db.clone(), fleet.home().admin.clone());
    let directory = TenantDirectory::start(db.clone()).await?;
    let sessions = SessionCache::start(&fleet);
    let links = Links {
        public_url: settings.public_url.clone(),
        base_domain: settings.base_domain.clone(),
        port,
        https: settings.tls.is_some(),
    };
    let in_flight = Arc::new(tokio::sync::Semaphore::new(settings.max_requests_in_flight));
    let state = AppState {
        db,
        admin_db,
        fleet,
        directory,
        sessions,
        settings: Arc::new(settings),
        auth: Arc::new(AuthSettings::default()),
        links: Arc::new(links),
        limiter: Arc::new(LoginLimiter::default()),
        anonymous: Arc::default(),
        policies,
        in_flight,
        metrics,
        imports: Arc::default(),
    };
    let (api_router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(platform::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(invitations::router())
        .merge(pipeline::router())
        .merge(custom_fields::router())
        .merge(records::router())
        .merge(contacts_csv::router())
        .split_for_parts();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let openapi = Arc::new(openapi::complete(serde_json::to_value(&openapi)?));
    let router = api_router
        .merge(health::router(openapi))
        .merge(web::router())
        .fallback(web::fallback)
        .with_state(state.clone());
    Ok(middleware::wrap(router, state))
}

/// Serves on `listener` until `shutdown` resolves, then finishes the
/// requests in flight. Used by `atrium serve` and by the tests alike.
pub async fn serve(
    listener: TcpListener,
    db: Database,
    admin_db: AdminDatabase,
    settings: ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_fleet(listener, Fleet::single(db, admin_db), settings, shutdown).await
}

/// [`serve`] for tenants on several data clusters.
pub async fn serve_fleet(
    listener: TcpListener,
    fleet: Fleet,
    settings: ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let port = listener.local_addr()?.port();
    let settings_of_connections = connections::Limits::from(&settings);
    // Read before anything starts: a bad certificate fails the start.
    let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let _reloader = tls.as_ref().map(|(_, certificate)| {
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(tls::reload_on_hangup(
            certificate.clone(),
        )))
    });
    let metrics = Arc::new(tenant_metrics::TenantMetrics::default());
    let db = fleet.home().db.clone();
    let policies = Arc::<policy::Policies>::default();
    let app = build(fleet, settings, port, metrics.clone(), policies.clone()).await?;
    let server_id = tenant_metrics::server_id(port);
    // Stopped with the server, even when the caller drops this future
    // instead of resolving `shutdown`: it holds the pool.
    let publisher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        tenant_metrics::publish_every_minute(db.clone(), server_id.clone(), metrics),
    ));
    let heartbeat = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        share_limits_with_live_servers(db.clone(), server_id.clone(), policies),
    ));
    let served = connections::serve(
        listener,
        app,
        &settings_of_connections,
        tls.map(|(acceptor, _)| acceptor),
        shutdown,
    )
    .await;
    publisher.abort();
    heartbeat.abort();
    if let Err(e) = atrium_store::fleet::servers::withdraw(&db, &server_id).await {
        tracing::debug!(error = format!("{e:#}"), "withdrawing this server's row");
    }
    if let Err(e) = atrium_store::fleet::tenant_metrics::withdraw(&db, &server_id).await {
        tracing::debug!(
            error = format!("{e:#}"),
            "withdrawing this server's tenant metrics"
        );
    }
    served?;
    Ok(())
}
