//! The web application's sign-in session and its protection against
//! cross-site requests.
//!
//! The session is a cookie holding the same kind of token as the API's
//! bearer token (256 random bits, stored hashed): `HttpOnly`,
//! `SameSite=Lax`, `Path=/`, `Secure` when the browser came over HTTPS
//! (see [`over_https`]). A signed-in form carries a CSRF token derived from the session token, so
//! it is bound to the session and known only to pages the session was
//! shown. A form shown before anyone is signed in (sign-in, password
//! reset, invitation) carries the value of a random cookie of its own
//! instead (double submit).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::WebError;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Authed;

pub(crate) const SESSION_COOKIE: &str = "atrium_session";
pub(crate) const CSRF_COOKIE: &str = "atrium_csrf";

/// A cookie of the request, by name.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value: `max_age` seconds, or `Some(0)` to delete it.
/// `Secure` is added on the way out when the request came over HTTPS
/// (see [`mark_cookies_secure`]).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    HeaderValue::from_str(&text).expect("cookie values are URL-safe base64")
}

/// Whether the browser reached the server over HTTPS: the server serves
/// TLS itself, its public URL (what a proxy in front serves) is https, or
/// a trusted proxy says so in `X-Forwarded-Proto`.
pub(crate) fn over_https(
    settings: &crate::ServerSettings,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> bool {
    settings.tls.is_some()
        || settings
            .public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
        || (peer.is_some_and(|ip| crate::extract::is_trusted_proxy(&settings.trusted_proxies, &ip))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")))
}

/// Makes every cookie a response sets `Secure`: one place for what is a
/// property of the connection, not of each page.
pub(crate) fn mark_cookies_secure(headers: &mut HeaderMap) {
    let marked: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| match value.to_str() {
            Ok(text) if !text.contains("; Secure") => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| value.clone())
            }
            _ => value.clone(),
        })
        .collect();
    if marked.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for value in marked {
        headers.append(header::SET_COOKIE, value);
    }
}

fn url_safe(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The CSRF token of a signed-in session's forms.
pub(crate) fn session_csrf(session_token: &str) -> String {
    url_safe(&Sha256::digest(
        format!("atrium-csrf\0{session_token}").as_bytes(),
    ))
}

/// A fresh value for the pre-session CSRF cookie.
pub(crate) fn new_form_token() -> String {
    url_safe(&rand::random::<[u8; 32]>())
}

/// Refuses (403) a form whose token is not the expected one.
pub(crate) fn check_csrf(expected: &str, given: &str) -> Result<(), WebError> {
    let same: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
    if same && !expected.is_empty() {
        Ok(())
    } else {
        Err(WebError::forbidden(
            "the form has expired or did not come from this site; go back, reload it and try again",
        ))
    }
}

/// A signed-in page: the request's tenant transaction (as the API's
/// [`Authed`]) and the CSRF token its forms carry. Signed out, a page
/// sends the person to the sign-in page.
pub(crate) struct SignedIn {
    pub authed: Authed,
    pub csrf: String,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let token = cookie(&parts.headers, SESSION_COOKIE);
        let csrf = token.as_deref().map(session_csrf).unwrap_or_default();
        match Authed::with_token(parts, state, token).await {
            Ok(authed) => Ok(Self { authed, csrf }),
            Err(e) if e.status() == axum::http::StatusCode::UNAUTHORIZED => Err(WebError::SignIn),
            Err(e) => Err(e.into()),
        }
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x_atrium_session=no; atrium_session=abc; other=1"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), None);
    }

    #[test]
    fn a_csrf_token_is_bound_to_its_session() {
        assert_eq!(session_csrf("a"), session_csrf("a"));
        assert_ne!(session_csrf("a"), session_csrf("b"));
        assert!(check_csrf(&session_csrf("a"), &session_csrf("b")).is_err());
        assert!(check_csrf("", "").is_err(), "no token is never a match");
    }
}
