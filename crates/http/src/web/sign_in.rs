//! Signing in and out in the browser.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use atrium_services::{ServiceError, auth};

use super::page::{layout, respond};
use super::session::{
    CSRF_COOKIE, SESSION_COOKIE, SignedIn, check_csrf, cookie, new_form_token, set_cookie,
};
use super::{PageResult, see_other};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ClientInfo, PublicTenant};

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// What the form says above its fields, if anything.
enum Trouble {
    None,
    /// Not trouble: the password was just reset.
    PasswordSet,
    WrongPassword,
    Retry(u64),
    Other(String),
}

fn sign_in_page(email: &str, csrf: &str, trouble: &Trouble) -> Markup {
    layout(
        "Sign in",
        "",
        None,
        html! {
            @match trouble {
                Trouble::None => {}
                Trouble::PasswordSet => p.notice role="status" { "Your new password is set. Sign in with it." }
                Trouble::WrongPassword => p.alert role="alert" { "Wrong email or password." }
                Trouble::Retry(seconds) => p.alert role="alert" {
                    "Too many attempts. Try again in " (seconds) " seconds."
                }
                Trouble::Other(message) => p.alert role="alert" { (message) }
            }
            form.stack.card method="post" action="/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                div {
                    label for="email" { "Email" }
                    input id="email" name="email" type="email" autocomplete="username" required value=(email);
                }
                div {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                }
                div { button type="submit" { "Sign in" } }
            }
            p { a href="/forgot-password" { "Forgot your password?" } }
        },
    )
}

/// The pre-session CSRF value: the visitor's cookie, or a new one to set.
pub(super) fn form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) => (token, false),
        None => (new_form_token(), true),
    }
}

pub(super) fn with_form_cookie(mut response: Response, token: &str, new: bool) -> Response {
    if new {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, token, None));
    }
    response
}

pub(crate) async fn form(
    tenant: Result<PublicTenant, ApiError>,
    headers: HeaderMap,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> PageResult {
    tenant?;
    let (csrf, new) = form_token(&headers);
    let note = if query.get("reset").is_some_and(|r| r == "done") {
        Trouble::PasswordSet
    } else {
        Trouble::None
    };
    let page = respond(StatusCode::OK, sign_in_page("", &csrf, &note));
    Ok(with_form_cookie(page, &csrf, new))
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    tenant: Result<PublicTenant, ApiError>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> PageResult {
    let PublicTenant(scope) = tenant?;
    let Ok(Form(form)) = form else {
        return Err(ApiError::bad_request("the form could not be read").into());
    };
    check_csrf(
        &cookie(&headers, CSRF_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    let signed_in = auth::login(
        &scope,
        &state.auth,
        &state.limiter,
        form.email.trim(),
        &form.password,
        client.as_client(),
    )
    .await;
    let again = |status: StatusCode, trouble: Trouble| {
        Ok(respond(
            status,
            sign_in_page(&form.email, &form.csrf, &trouble),
        ))
    };
    match signed_in {
        Ok(session) => {
            let lifetime = (session.expires_at - chrono::Utc::now())
                .num_seconds()
                .max(0);
            let mut response = see_other("/");
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &session.token, Some(lifetime)),
            );
            Ok(response)
        }
        Err(ServiceError::Unauthorized(_)) => {
            again(StatusCode::UNAUTHORIZED, Trouble::WrongPassword)
        }
        Err(ServiceError::RateLimited {
            retry_after_seconds,
        }) => again(
            StatusCode::TOO_MANY_REQUESTS,
            Trouble::Retry(retry_after_seconds),
        ),
        Err(e @ ServiceError::Invalid(_)) => {
            let error = ApiError::from(e);
            let message: Vec<String> = error
                .field_errors()
                .map(|(field, message)| format!("{}: {message}", label_of(field)))
                .collect();
            again(
                StatusCode::UNPROCESSABLE_ENTITY,
                Trouble::Other(message.join("; ")),
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The answer to a sign-in that worked (by password or by joining): the
/// session cookie, and the home page.
pub(super) fn signed_in_home(session: &auth::SignedIn) -> Response {
    let lifetime = (session.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    let mut response = see_other("/");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session.token, Some(lifetime)),
    );
    response
}

fn label_of(field: &str) -> &str {
    match field {
        "email" => "Email",
        "password" => "Password",
        other => other,
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// Ends the session, here and for the API alike, and forgets the cookie.
pub(crate) async fn sign_out(
    signed_in: SignedIn,
    form: Result<Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> PageResult {
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    // Refused, the request's transaction is dropped unused: it rolls back.
    check_csrf(&signed_in.csrf, &given)?;
    signed_in
        .authed
        .run(async |tx, me| auth::logout(tx, me).await)
        .await?;
    let mut response = see_other("/sign-in");
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    Ok(response.into_response())
}
