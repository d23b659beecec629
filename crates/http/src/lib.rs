//! The HTTP adapter: axum routes over the services.

mod health;

use std::net::SocketAddr;
use std::time::Duration;

use atrium_store::Database;
use axum::Router;
use tokio::net::TcpListener;

/// What the server needs to know beyond its database.
#[derive(Clone)]
pub struct ServerSettings {
    pub base_domain: String,
    pub platform_token: Option<String>,
    pub public_url: Option<String>,
    pub request_timeout: Duration,
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
            .finish()
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub db: Database,
    #[allow(dead_code)] // read by the tenant routes
    pub settings: ServerSettings,
}

pub fn router(db: Database, settings: ServerSettings) -> Router {
    let state = AppState { db, settings };
    Router::new().merge(health::router()).with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then finishes the
/// requests in flight. Used by `atrium serve` and by the tests alike.
pub async fn serve(
    listener: TcpListener,
    db: Database,
    settings: ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(db, settings);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
