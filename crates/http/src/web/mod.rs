//! The web application: server-rendered pages for the people of each
//! organisation, a second adapter over the same services, tenant
//! transactions and permissions as the JSON API. Every flow is plain
//! links and forms (POST, then a 303 redirect); templates are `maud`
//! markup checked at compile time, and every value is escaped by it.

mod account;
mod activities;
mod assets;
mod forms;
mod home;
mod import;
pub(crate) use import::ImportJobs;
mod page;
mod pipeline;
mod records;
pub(crate) mod session;
mod settings;
mod sign_in;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn, map_response};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use atrium_services::ServiceError;

use crate::AppState;
use crate::error::ApiError;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::start))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route(
            "/forgot-password",
            get(account::forgot_form).post(account::forgot_submit),
        )
        .route(
            "/reset-password",
            get(account::reset_form).post(account::reset_submit),
        )
        .route(
            "/accept-invitation",
            get(account::join_form).post(account::join_submit),
        )
        .route("/assets/{name}", get(assets::serve))
        .route("/views", post(views::save))
        .route("/views/{id}/delete", post(views::delete))
        .route(
            "/settings",
            get(|| async { see_other("/settings/profile") }),
        )
        .route("/settings/users", get(settings::users_page))
        .route("/settings/users/invite", post(settings::invite))
        .route("/settings/users/{id}/role", post(settings::change_role))
        .route(
            "/settings/users/{id}/deactivate",
            post(settings::deactivate),
        )
        .route("/settings/invitations/{id}/revoke", post(settings::revoke))
        .route("/settings/pipeline", get(settings::pipeline_page))
        .route("/settings/pipeline/add", post(settings::add_stage))
        .route("/settings/pipeline/save", post(settings::save_stage))
        .route("/settings/pipeline/delete", post(settings::delete_stage))
        .route("/settings/custom-fields", get(settings::fields_page))
        .route("/settings/custom-fields/add", post(settings::add_field))
        .route(
            "/settings/custom-fields/{id}/delete",
            post(settings::delete_field),
        )
        .route("/settings/profile", get(settings::profile_page))
        .route(
            "/settings/profile/password",
            post(settings::change_password),
        )
        .route("/activities", get(activities::page))
        .route("/activities/{id}/done", post(activities::done))
        .route("/contacts/export", get(export_contacts))
        .route("/contacts/import", get(import::form))
        .route("/contacts/import/check", post(import::check))
        .route("/contacts/import/{token}", get(import::show))
        .route("/contacts/import/{token}/run", post(import::run))
        .route(
            "/contacts/import/{token}/refused.csv",
            get(import::refused_rows),
        )
        .route("/deals", get(pipeline::board))
        .route("/deals/{id}/move", post(pipeline::move_deal))
        .merge(records::router())
        .layer(from_fn(render_failures))
        .layer(map_response(security_headers))
}

/// The contacts as CSV, for the list's "Export" link (same file and
/// filters as `GET /api/v1/contacts/export`).
async fn export_contacts(
    signed_in: Result<session::SignedIn, WebError>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> PageResult {
    Ok(crate::contacts_csv::export(signed_in?.authed, params).await?)
}

/// Why a page was not shown.
pub(crate) enum WebError {
    /// Nobody is signed in: go to the sign-in page.
    SignIn,
    /// What the API would answer, drawn as a page.
    Failed(ApiError),
}

impl WebError {
    pub(crate) fn forbidden(message: &str) -> Self {
        Self::Failed(ServiceError::Forbidden(message.to_owned()).into())
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(ServiceError::Other(e).into())
    }
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        Self::Failed(e.into())
    }
}

/// A failure on its way to [`render_failures`], which knows the request
/// id the page shows.
#[derive(Clone)]
struct Failure(Arc<ApiError>);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/sign-in").into_response(),
            Self::Failed(error) => {
                let mut response = error.status().into_response();
                response.extensions_mut().insert(Failure(Arc::new(error)));
                response
            }
        }
    }
}

pub(crate) type PageResult = Result<Response, WebError>;

async fn render_failures(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    match response.extensions().get::<Failure>() {
        Some(Failure(error)) => page::error_response(error, request_id.as_deref()),
        None => response,
    }
}

/// Headers every page carries: no inline script, no framing, no sniffing,
/// no referrer beyond this site.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether a path belongs to the API (JSON answers) rather than the pages.
pub(crate) fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/")
        || path.starts_with("/platform/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// A refusal made before any handler runs (the server at capacity, a
/// request that took too long, a body too large): problem+json on the
/// API's paths, a page of the application on the others.
pub(crate) async fn refusal(path: &str, error: ApiError, request_id: Option<&str>) -> Response {
    if is_api_path(path) {
        return error.into_response();
    }
    security_headers(page::error_response(&error, request_id)).await
}

/// Paths nothing answers: the API's are problem+json, everything else is
/// a page of the application.
pub(crate) async fn fallback(uri: axum::http::Uri) -> Response {
    if is_api_path(uri.path()) {
        return ApiError::not_found("no such path").into_response();
    }
    security_headers(page::not_found_page()).await
}

/// A 303 to `to`, the answer to every successful form.
/// A record id from a path: anything but a positive number is the 404
/// page, as an id that names nothing is.
pub(crate) fn id_of(raw: &str) -> Result<i32, WebError> {
    raw.parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("no such record").into())
}

pub(crate) fn see_other(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).expect("local paths"),
        )],
    )
        .into_response()
}
