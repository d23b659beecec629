//! Invitations: admins invite, invitees look up and accept (no sign-in).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::invitations;
use atrium_store::invitations::Invitation;

use crate::AppState;
use crate::auth::SessionBody;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authed, ClientInfo, Id, Json, PublicTenant};
use crate::list::{Page, Query, id_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(lookup_invitation))
        .routes(routes!(accept_invitation))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationBody {
    email: String,
    /// `admin`, `manager`, `sales_rep` or `viewer`.
    role: String,
}

/// A new invitation: `token` is shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedInvitationBody {
    id: i32,
    email: String,
    role: String,
    expires_at: DateTime<Utc>,
    token: String,
    accept_url: String,
}

/// A pending invitation (without its token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    id: i32,
    email: String,
    role: String,
    expires_at: DateTime<Utc>,
    invited_by: Option<i32>,
    created_at: DateTime<Utc>,
}

impl From<&Invitation> for InvitationView {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id,
            email: i.email.clone(),
            role: i.role.clone(),
            expires_at: i.expires_at,
            invited_by: i.invited_by,
            created_at: i.created_at,
        }
    }
}

/// Invite someone (admins). The email is queued in the outbox.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations", security(("session" = [])),
    request_body = InvitationBody,
    responses((status = 201, body = IssuedInvitationBody), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_invitation(
    State(state): State<AppState>,
    authed: Authed,
    Json(body): Json<InvitationBody>,
) -> ApiResult<(StatusCode, axum::Json<IssuedInvitationBody>)> {
    let issued = authed
        .run(async |tx, me| {
            invitations::create(tx, me, &state.auth, &state.links, &body.email, &body.role).await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IssuedInvitationBody {
            id: issued.invitation.id,
            email: issued.invitation.email,
            role: issued.invitation.role,
            expires_at: issued.invitation.expires_at,
            token: issued.token,
            accept_url: issued.accept_url,
        }),
    ))
}

/// Pending invitations (admins).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "invitations", security(("session" = [])),
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<InvitationView>), (status = 403, body = Problem)))]
async fn list_invitations(
    authed: Authed,
    query: Query,
) -> ApiResult<axum::Json<Page<InvitationView>>> {
    Ok(axum::Json(
        authed
            .run(async |tx, me| -> ApiResult<_> {
                let limit = query.limit()?;
                let rows = invitations::list(tx, me, query.id_cursor()?, limit + 1).await?;
                Ok(id_page(rows, limit, |i| i.id, |i| InvitationView::from(i)))
            })
            .await?,
    ))
}

/// Revoke a pending invitation (admins): its token stops working.
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "invitations", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_invitation(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| invitations::revoke(tx, me, id).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationPreviewBody {
    tenant_name: String,
    email: String,
    role: String,
    expires_at: DateTime<Utc>,
}

/// What an invitation is for, by its token (no sign-in). Unknown, used,
/// revoked, expired and other organisations' tokens are all 404.
#[utoipa::path(get, path = "/api/v1/invitations/lookup", tag = "invitations",
    params(("token" = String, Query)),
    responses((status = 200, body = InvitationPreviewBody), (status = 404, body = Problem)))]
async fn lookup_invitation(
    PublicTenant(scope): PublicTenant,
    query: Query,
) -> ApiResult<axum::Json<InvitationPreviewBody>> {
    let token = query.str("token").unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::not_found("invitation not found"));
    }
    let preview = invitations::lookup(&scope, token).await?;
    Ok(axum::Json(InvitationPreviewBody {
        tenant_name: preview.tenant_name,
        email: preview.email,
        role: preview.role,
        expires_at: preview.expires_at,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: String,
    first_name: String,
    last_name: String,
    password: String,
}

/// Accept an invitation (no sign-in): creates the user and signs them in.
/// A token works once.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "invitations",
    request_body = AcceptBody,
    responses((status = 201, body = SessionBody), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn accept_invitation(
    State(state): State<AppState>,
    PublicTenant(scope): PublicTenant,
    client: ClientInfo,
    Json(body): Json<AcceptBody>,
) -> ApiResult<(StatusCode, axum::Json<SessionBody>)> {
    let signed_in = invitations::accept(
        &scope,
        &state.auth,
        &body.token,
        &body.first_name,
        &body.last_name,
        &body.password,
        client.as_client(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(signed_in.into())))
}
