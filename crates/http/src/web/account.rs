//! The pages the emails link to: a forgotten password, its reset, and an
//! invitation to join.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;

use atrium_services::{ServiceError, auth, invitations};

use super::forms::{Errors, Input, csrf_field};
use super::page::{layout, respond};
use super::session::{CSRF_COOKIE, check_csrf, cookie};
use super::sign_in::{form_token, signed_in_home, with_form_cookie};
use super::{PageResult, see_other};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ClientInfo, PublicTenant};

fn unreadable() -> ApiError {
    ApiError::bad_request("the form could not be read")
}

#[derive(Deserialize, Default)]
pub(crate) struct EmailForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
}

fn forgot_page(csrf: &str, email: &str, sent: bool, errors: &Errors) -> Markup {
    layout(
        "Forgot your password?",
        "",
        None,
        html! {
            @if sent {
                p.notice role="status" {
                    "If an account uses that email, a reset link is on its way. It works for an hour."
                }
            }
            form.stack.card method="post" action="/forgot-password" {
                (csrf_field(csrf))
                (Input { label: "Email", name: "email", kind: "email", value: email, autocomplete: "username", required: true }.render(errors))
                div { button type="submit" { "Send reset link" } }
            }
            p { a href="/sign-in" { "Back to sign in" } }
        },
    )
}

pub(crate) async fn forgot_form(
    tenant: Result<PublicTenant, ApiError>,
    headers: HeaderMap,
) -> PageResult {
    tenant?;
    let (csrf, new) = form_token(&headers);
    let page = respond(
        StatusCode::OK,
        forgot_page(&csrf, "", false, &Errors::default()),
    );
    Ok(with_form_cookie(page, &csrf, new))
}

/// Always the same answer, whether or not the email has an account.
pub(crate) async fn forgot_submit(
    State(state): State<AppState>,
    tenant: Result<PublicTenant, ApiError>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<EmailForm>, FormRejection>,
) -> PageResult {
    let PublicTenant(scope) = tenant?;
    let Form(form) = form.map_err(|_| unreadable())?;
    check_csrf(
        &cookie(&headers, CSRF_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    let requested = auth::request_password_reset(
        &scope,
        &state.auth,
        &state.limiter,
        &state.links,
        form.email.trim(),
        client.address,
    )
    .await;
    match requested {
        Ok(()) => Ok(respond(
            StatusCode::OK,
            forgot_page(&form.csrf, &form.email, true, &Errors::default()),
        )),
        Err(e @ ServiceError::Invalid(_)) => {
            let errors = Errors::of(&ApiError::from(e));
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                forgot_page(&form.csrf, &form.email, false, &errors),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    repeat_password: String,
    #[serde(default)]
    csrf: String,
}

fn reset_page(csrf: &str, token: &str, errors: &Errors) -> Markup {
    layout(
        "Choose a new password",
        "",
        None,
        html! {
            @if let Some(message) = errors.get("token") {
                p.alert role="alert" {
                    "This reset link " (message) ". "
                    a href="/forgot-password" { "Ask for a new one" } "."
                }
            }
            form.stack.card method="post" action="/reset-password" {
                (csrf_field(csrf))
                input type="hidden" name="token" value=(token);
                (Input { label: "New password", name: "new_password", kind: "password", value: "", autocomplete: "new-password", required: true }.render(errors))
                (Input { label: "Repeat new password", name: "repeat_password", kind: "password", value: "", autocomplete: "new-password", required: true }.render(errors))
                div { button type="submit" { "Set password" } }
            }
        },
    )
}

pub(crate) async fn reset_form(
    tenant: Result<PublicTenant, ApiError>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> PageResult {
    tenant?;
    let (csrf, new) = form_token(&headers);
    let page = respond(
        StatusCode::OK,
        reset_page(&csrf, &query.token, &Errors::default()),
    );
    Ok(with_form_cookie(page, &csrf, new))
}

pub(crate) async fn reset_submit(
    tenant: Result<PublicTenant, ApiError>,
    headers: HeaderMap,
    form: Result<Form<ResetForm>, FormRejection>,
) -> PageResult {
    let PublicTenant(scope) = tenant?;
    let Form(form) = form.map_err(|_| unreadable())?;
    check_csrf(
        &cookie(&headers, CSRF_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    if form.new_password != form.repeat_password {
        let errors = Errors::of(&ApiError::invalid_field(
            "repeat_password",
            "is not the same as the new password",
        ));
        return Ok(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            reset_page(&form.csrf, &form.token, &errors),
        ));
    }
    match auth::confirm_password_reset(&scope, &form.token, &form.new_password).await {
        Ok(()) => Ok(see_other("/sign-in?reset=done")),
        Err(e @ ServiceError::Invalid(_)) => {
            let errors = Errors::of(&ApiError::from(e));
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                reset_page(&form.csrf, &form.token, &errors),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct JoinForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

fn join_page(preview: &invitations::Preview, form: &JoinForm, errors: &Errors) -> Markup {
    layout(
        &format!("Join {}", preview.tenant_name),
        "",
        None,
        html! {
            p {
                @if let Some(inviter) = &preview.inviter { (inviter) " invited " } @else { "You are invited as " }
                strong { (preview.email) }
                " to " (preview.tenant_name) " on Atrium, as " (preview.role.replace('_', " ")) "."
            }
            @if !errors.is_empty() && errors.get("first_name").is_none() && errors.get("last_name").is_none() && errors.get("password").is_none() {
                p.alert role="alert" { "Something is not right; check the fields below." }
            }
            form.stack.card method="post" action="/accept-invitation" {
                (csrf_field(&form.csrf))
                input type="hidden" name="token" value=(form.token);
                (Input { label: "First name", name: "first_name", kind: "text", value: &form.first_name, autocomplete: "given-name", required: true }.render(errors))
                (Input { label: "Last name", name: "last_name", kind: "text", value: &form.last_name, autocomplete: "family-name", required: true }.render(errors))
                (Input { label: "Password", name: "password", kind: "password", value: "", autocomplete: "new-password", required: true }.render(errors))
                div { button type="submit" { "Join" } }
            }
        },
    )
}

fn gone_page() -> Markup {
    layout(
        "Invitation not valid",
        "",
        None,
        html! {
            p { "This invitation was already used, was revoked, or has expired. Ask whoever invited you to send a new one." }
            p { a href="/sign-in" { "Sign in" } }
        },
    )
}

pub(crate) async fn join_form(
    tenant: Result<PublicTenant, ApiError>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> PageResult {
    let PublicTenant(scope) = tenant?;
    let preview = match invitations::lookup(&scope, &query.token).await {
        Ok(preview) => preview,
        Err(ServiceError::NotFound(_)) => return Ok(respond(StatusCode::NOT_FOUND, gone_page())),
        Err(e) => return Err(e.into()),
    };
    let (csrf, new) = form_token(&headers);
    let form = JoinForm {
        token: query.token,
        csrf: csrf.clone(),
        ..Default::default()
    };
    let page = respond(
        StatusCode::OK,
        join_page(&preview, &form, &Errors::default()),
    );
    Ok(with_form_cookie(page, &csrf, new))
}

/// Creates the user, signs them in, and opens the home page.
pub(crate) async fn join_submit(
    State(state): State<AppState>,
    tenant: Result<PublicTenant, ApiError>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<JoinForm>, FormRejection>,
) -> PageResult {
    let PublicTenant(scope) = tenant?;
    let Form(form) = form.map_err(|_| unreadable())?;
    check_csrf(
        &cookie(&headers, CSRF_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    let accepted = invitations::accept(
        &scope,
        &state.auth,
        &form.token,
        &form.first_name,
        &form.last_name,
        &form.password,
        client.as_client(),
    )
    .await;
    match accepted {
        Ok(session) => Ok(signed_in_home(&session)),
        Err(ServiceError::NotFound(_)) => Ok(respond(StatusCode::NOT_FOUND, gone_page())),
        Err(e @ ServiceError::Invalid(_)) => {
            let errors = Errors::of(&ApiError::from(e));
            let preview = match invitations::lookup(&scope, &form.token).await {
                Ok(preview) => preview,
                Err(_) => return Ok(respond(StatusCode::NOT_FOUND, gone_page())),
            };
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                join_page(&preview, &form, &errors),
            ))
        }
        Err(e) => Err(e.into()),
    }
}
