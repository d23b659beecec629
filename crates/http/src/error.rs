//! Every error answer is `application/problem+json` with the codes of
//! API.md; a 500 logs its cause chain and sends none of it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use atrium_services::ServiceError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A problem document (RFC 9457) with Atrium's `code` and field errors.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    pub(crate) retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn tenant_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            "no organisation answers at this address",
        )
    }

    pub fn tenant_suspended() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "tenant_suspended",
            "this organisation is suspended",
        )
    }

    /// The tenant is in maintenance: its people are told the operator's
    /// message, and when to come back.
    pub fn maintenance(message: Option<&str>) -> Self {
        Self {
            retry_after: Some(MAINTENANCE_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "maintenance",
                message.unwrap_or(
                    "this organisation is down for maintenance; it will be back shortly",
                ),
            )
        }
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the record changed since you read it (If-Match does not match its ETag)",
        )
    }

    pub fn payload_too_large(limit: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit}"),
        )
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; the request id identifies it in our logs",
        )
    }

    /// 422 naming each bad field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }

    /// The refused fields of a 422, as (field, message).
    pub(crate) fn field_errors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(problems) => Self::validation(
                problems
                    .into_iter()
                    .map(|p| FieldError {
                        field: p.field.into_owned(),
                        message: p.message,
                    })
                    .collect(),
            ),
            ServiceError::Conflict(detail) => Self::new(StatusCode::CONFLICT, "conflict", detail),
            ServiceError::TooLarge(detail) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            ServiceError::Damaged(detail) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            ),
            ServiceError::NotFound(what) => Self::not_found(format!("{what} not found")),
            ServiceError::Unauthorized(detail) => Self::unauthorized(detail),
            ServiceError::Forbidden(detail) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
            }
            ServiceError::RateLimited {
                retry_after_seconds,
            } => Self {
                retry_after: Some(retry_after_seconds),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many attempts; retry in {retry_after_seconds} seconds"),
                )
            },
            ServiceError::PreconditionFailed => Self::precondition_failed(),
            ServiceError::Moving => Self::unavailable(
                "this organisation is moving to another database server; retry shortly",
                1,
            ),
            ServiceError::Busy => Self::unavailable(
                "this organisation is using all of its capacity; retry shortly",
                1,
            ),
            ServiceError::Other(e) => {
                if is_unavailable(&e) {
                    tracing::warn!(error = format!("{e:#}"), "database unavailable");
                    return Self::unavailable("the database is unavailable; retry shortly", 2);
                }
                tracing::error!(error = format!("{e:#}"), "internal error");
                Self::internal()
            }
        }
    }
}

/// The database is down or restarting, or a statement ran out of time.
fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            let io = std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>());
            return pg.is_closed()
                || io
                || pg.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::QUERY_CANCELED
                        || *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN
                        || *c == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                });
        }
        cause
            .downcast_ref::<deadpool_postgres::PoolError>()
            .is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
    })
}

/// Seconds a client is asked to wait while a tenant is in maintenance.
const MAINTENANCE_RETRY_AFTER: u64 = 30;

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ServiceError::Other(e).into()
    }
}

impl From<atrium_store::StoreError> for ApiError {
    fn from(e: atrium_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            problem_type: format!(
                "https://atrium.dev/problems/{}",
                self.code.replace('_', "-")
            ),
            title: title(self.status).to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
