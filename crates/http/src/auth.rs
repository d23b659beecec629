//! Signing in and out, the current user, and passwords.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::auth::{self, SignedIn};
use atrium_services::users::UserView;

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authed, ClientInfo, Json, PublicTenant};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// A new session. `token` goes in `Authorization: Bearer <token>`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    token: String,
    expires_at: DateTime<Utc>,
    user: UserView,
}

impl From<SignedIn> for SessionBody {
    fn from(s: SignedIn) -> Self {
        Self {
            token: s.token,
            expires_at: s.expires_at,
            user: UserView::from(&s.user),
        }
    }
}

/// Sign in. A wrong email and a wrong password get the same answer; too
/// many failures for one email or from one address get 429.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = SessionBody), (status = 401, body = Problem),
              (status = 429, body = Problem), (status = 422, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    PublicTenant(scope): PublicTenant,
    client: ClientInfo,
    Json(body): Json<LoginBody>,
) -> ApiResult<axum::Json<SessionBody>> {
    let signed_in = auth::login(
        &scope,
        &state.auth,
        &state.limiter,
        &body.email,
        &body.password,
        client.as_client(),
    )
    .await?;
    Ok(axum::Json(signed_in.into()))
}

/// Sign out: the token stops working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("session" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(authed: Authed) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| auth::logout(tx, me).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("session" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn me(authed: Authed) -> ApiResult<axum::Json<UserView>> {
    let view = authed
        .run(async |_tx, me| Ok::<_, ApiError>(UserView::from(&me.user)))
        .await?;
    Ok(axum::Json(view))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

/// Change the signed-in user's password; their other sessions end.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("session" = [])),
    request_body = PasswordChangeBody,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    authed: Authed,
    Json(body): Json<PasswordChangeBody>,
) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| {
            auth::change_password(
                tx,
                &state.limiter,
                me,
                &body.current_password,
                &body.new_password,
            )
            .await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestBody {
    email: String,
}

/// Ask for a password reset email. The answer is the same whether or not
/// the email belongs to a user.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth",
    request_body = ResetRequestBody, responses((status = 202)))]
async fn request_reset(
    State(state): State<AppState>,
    PublicTenant(scope): PublicTenant,
    client: ClientInfo,
    Json(body): Json<ResetRequestBody>,
) -> ApiResult<StatusCode> {
    auth::request_password_reset(
        &scope,
        &state.auth,
        &state.limiter,
        &state.links,
        &body.email,
        client.address,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmBody {
    token: String,
    new_password: String,
}

/// Choose a new password with the emailed token (single use, one hour);
/// every session of the user ends.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth",
    request_body = ResetConfirmBody, responses((status = 204), (status = 422, body = Problem)))]
async fn confirm_reset(
    PublicTenant(scope): PublicTenant,
    Json(body): Json<ResetConfirmBody>,
) -> ApiResult<StatusCode> {
    auth::confirm_password_reset(&scope, &body.token, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
