//! Typed extractors: the tenant from `Host`, the signed-in user, the
//! platform operator, JSON bodies with field-level errors, client facts.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use atrium_domain::TenantStatus;
use atrium_services::{CurrentUser, Scope, ServiceError, auth};
use atrium_store::TenantTx;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The subdomain named by a `Host` value, if it is `<label>.<base-domain>`.
pub(crate) fn subdomain_of(host: &str, base_domain: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    // Strip a port; an IPv6 literal ([::1]:8080) is never a tenant host.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host.as_str(),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let label = name.strip_suffix(base_domain)?.strip_suffix('.')?;
    let valid = !label.is_empty()
        && !label.contains('.')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| label.to_owned())
}

/// The tenant a request is for, for work done without signing in (sign
/// in, password reset, invitations): counted against the anonymous
/// allowance of its address and of the tenant, never against the tenant's
/// own budget. Unknown hosts are 404 `tenant_not_found`, suspended tenants
/// 403 `tenant_suspended`.
pub(crate) struct PublicTenant(pub Scope);

impl FromRequestParts<AppState> for PublicTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let scope = resolve_tenant(parts, state).await?;
        state
            .anonymous
            .admit(scope.tenant.id, client_ip(parts, state))?;
        Ok(Self(scope))
    }
}

/// The request's tenant by its host, admitted to nothing yet.
async fn resolve_tenant(parts: &Parts, state: &AppState) -> ApiResult<Scope> {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .ok_or_else(ApiError::tenant_not_found)?;
    let subdomain =
        subdomain_of(host, &state.settings.base_domain).ok_or_else(ApiError::tenant_not_found)?;
    let tenant = state
        .directory
        .resolve(&subdomain)
        .await?
        .ok_or_else(ApiError::tenant_not_found)?;
    match tenant.status {
        TenantStatus::Suspended => return Err(ApiError::tenant_suspended()),
        TenantStatus::Maintenance => {
            return Err(ApiError::maintenance(tenant.maintenance_message.as_deref()));
        }
        TenantStatus::Active => {}
    }
    if let Some(charged) = parts.extensions.get::<ChargedTenant>() {
        charged.set(tenant.id);
    }
    tracing::Span::current().record("tenant", tenant.id);
    let Some(cluster) = state.fleet.cluster(&tenant.cluster) else {
        tracing::error!(
            tenant = tenant.id,
            cluster = %tenant.cluster,
            "the tenant's cluster is not declared in this server's settings"
        );
        return Err(ApiError::unavailable(
            "this organisation's database is unavailable; retry shortly",
            5,
        ));
    };
    Ok(Scope {
        placement: Some(atrium_services::Placement {
            directory: state.directory.clone(),
            fleet: state.fleet.clone(),
        }),
        db: cluster.db.clone(),
        statement_timeout: state
            .settings
            .request_timeout
            .min(tenant.tier.statement_timeout()),
        tenant,
    })
}

/// Filled in when a request resolves its tenant, so the middleware around
/// the handler can log and count the request by tenant, and charge its
/// database time to the tenant's limits.
#[derive(Clone, Default)]
pub(crate) struct ChargedTenant(std::sync::Arc<std::sync::Mutex<Option<ResolvedTenant>>>);

/// The id of the tenant a request resolved, and its policy once the
/// request is signed in.
type ResolvedTenant = (i32, Option<std::sync::Arc<crate::policy::TenantPolicy>>);

impl ChargedTenant {
    fn set(&self, id: i32) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, None));
    }

    /// From here on the request's database time is the tenant's: a user
    /// of it is signed in.
    fn charge_to(&self, policy: std::sync::Arc<crate::policy::TenantPolicy>) {
        if let Some((_, charged)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            *charged = Some(policy);
        }
    }

    pub fn get(&self) -> Option<i32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(id, _)| *id)
    }

    pub fn policy(&self) -> Option<std::sync::Arc<crate::policy::TenantPolicy>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|(_, limits)| limits.clone())
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A signed-in user, with the request's tenant transaction already open:
/// authentication and the work share one transaction. The transaction is
/// reached only through [`Authed::run`], which commits it when the work
/// succeeds and rolls it back otherwise: no handler can forget either.
#[must_use = "the request's transaction ends only through run"]
pub(crate) struct Authed {
    tx: TenantTx,
    me: CurrentUser,
    scope: Scope,
    /// For a request that may write: this server's remembered sessions,
    /// to forget the tenant's once the write has committed.
    forget_sessions: Option<std::sync::Arc<atrium_store::session_cache::SessionCache>>,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(parts).map(str::to_owned);
        Self::with_token(parts, state, token).await
    }
}

impl Authed {
    /// Signs the request in with `token` (the API's bearer token or the web
    /// application's session cookie: the same kind of session), opening its
    /// tenant transaction.
    pub(crate) async fn with_token(
        parts: &mut Parts,
        state: &AppState,
        token: Option<String>,
    ) -> ApiResult<Self> {
        let scope = resolve_tenant(parts, state).await?;
        let address = client_ip(parts, state);
        let Some(token) = token else {
            state.anonymous.admit(scope.tenant.id, address)?;
            return Err(ApiError::unauthorized(
                "sign in: send Authorization: Bearer <token>",
            ));
        };
        state.anonymous.refuse_blocked(address, &token)?;
        let policy = state.policies.of(&scope.tenant);
        policy.refuse_while_in_debt()?;
        let writes = if parts.method.is_safe() {
            auth::RequestWrites::Nothing
        } else {
            auth::RequestWrites::Records
        };
        let (tx, me) =
            match auth::begin_authenticated(&scope, &state.auth, &state.sessions, &token, writes)
                .await
            {
                Ok(signed_in) => signed_in,
                Err(e @ ServiceError::Unauthorized(_)) => {
                    state.anonymous.admit(scope.tenant.id, address)?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
        state.anonymous.vouch(&token);
        tracing::Span::current().record("user", me.id());
        // Signed in: from here the request is the tenant's own work, and
        // waits for (or is refused by) the tenant's rate and budget.
        if let Some(charged) = parts.extensions.get::<ChargedTenant>() {
            charged.charge_to(policy.clone());
        }
        if let Err(e) = policy.admit().await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        let forget_sessions =
            (writes == auth::RequestWrites::Records).then(|| state.sessions.clone());
        Ok(Self {
            tx,
            me,
            scope,
            forget_sessions,
        })
    }

    /// Runs the request's work in its transaction: commits if the work
    /// succeeded, rolls back otherwise.
    pub async fn run<T, E: Into<ApiError>>(
        self,
        work: impl AsyncFnOnce(&TenantTx, &CurrentUser) -> Result<T, E>,
    ) -> ApiResult<T> {
        Ok(self.run_and_keep(work).await?.0)
    }

    /// As [`Authed::run`], and hands back the user and the tenant for work
    /// that goes on in further transactions (a streamed export, an import).
    pub async fn run_and_keep<T, E: Into<ApiError>>(
        self,
        work: impl AsyncFnOnce(&TenantTx, &CurrentUser) -> Result<T, E>,
    ) -> ApiResult<(T, CurrentUser, Scope)> {
        let result = work(&self.tx, &self.me).await;
        match result {
            Ok(value) => {
                self.tx.commit().await.map_err(ServiceError::from)?;
                // A write may have ended a session or changed a user: the
                // triggers tell every server, this one included, within
                // milliseconds, but the client's next request may be
                // quicker than that.
                if let Some(sessions) = &self.forget_sessions {
                    sessions.forget_tenant(self.scope.tenant.id);
                }
                Ok((value, self.me, self.scope))
            }
            Err(e) => {
                let _ = self.tx.rollback().await;
                Err(e.into())
            }
        }
    }
}

/// The platform operator, by the configured token. Without a token the
/// platform API does not exist (404).
pub(crate) struct Platform;

impl FromRequestParts<AppState> for Platform {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Some(expected) = &state.settings.platform_token else {
            return Err(ApiError::not_found("no such path"));
        };
        let given = bearer(parts).unwrap_or_default();
        // Compare digests in constant time: equal lengths, no early exit.
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let same: bool = sha2::Sha256::digest(given.as_bytes())
            .ct_eq(&sha2::Sha256::digest(expected.as_bytes()))
            .into();
        if same {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized(
                "send Authorization: Bearer <platform token>",
            ))
        }
    }
}

/// Where a request comes from: the peer, or the client a trusted proxy
/// names in `X-Forwarded-For`.
pub(crate) struct ClientInfo {
    pub address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Ok(Self {
            address: client_ip(parts, state),
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(255).collect()),
        })
    }
}

impl ClientInfo {
    pub fn as_client(&self) -> auth::Client<'_> {
        auth::Client {
            address: self.address,
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// The client's address: the peer, or the client a trusted proxy names.
fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    peer.map(|peer| client_address(peer, parts, &state.settings.trusted_proxies))
}

/// Walks `X-Forwarded-For` from the right while the hop is a trusted proxy;
/// the first untrusted address is the client.
/// Whether `ip` is one of the proxies whose forwarding headers are
/// believed.
pub(crate) fn is_trusted_proxy(trusted: &[ipnet::IpNet], ip: &IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

fn client_address(peer: IpAddr, parts: &Parts, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted_proxy(trusted, ip);
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        client = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// A JSON body. Malformed JSON (or a body that is not JSON) is 400; a field
/// of the wrong type, a missing or unknown field is 422 naming the field;
/// an oversized body is 413.
pub(crate) struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        if let Some(ct) = &content_type
            && !(ct == "application/json" || ct.ends_with("+json"))
        {
            return Err(ApiError::bad_request(format!(
                "the body must be JSON (Content-Type: application/json), not {ct}"
            )));
        }
        if req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > crate::middleware::BODY_LIMIT)
        {
            return Err(ApiError::payload_too_large("1 MiB"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large("1 MiB")
                } else {
                    ApiError::bad_request("the body could not be read")
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // Syntax first: a body that is not JSON at all is 400, whatever shape
    // its first bytes would have had.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let mut with_nul = Vec::new();
    nul_fields(&value, "", &mut with_nul);
    if !with_nul.is_empty() {
        return Err(ApiError::validation(
            with_nul
                .into_iter()
                .map(|field| crate::error::FieldError {
                    field,
                    message: NUL_MESSAGE.to_owned(),
                })
                .collect(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::invalid_field(field_of(&path, &message), message)
    })
}

pub(crate) use atrium_domain::NUL_MESSAGE;

/// The dotted paths of every string (or key) in `value` holding U+0000.
fn nul_fields(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            found.push(if path.is_empty() {
                "body".into()
            } else {
                path.to_owned()
            });
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_fields(item, &join(&i.to_string()), found);
            }
        }
        serde_json::Value::Object(members) => {
            for (key, member) in members {
                let field = join(&key.replace('\0', "\\u0000"));
                if key.contains('\0') {
                    found.push(field);
                } else {
                    nul_fields(member, &field, found);
                }
            }
        }
        _ => {}
    }
}

/// The field an error is about: the path (which for an unknown field ends
/// with it), or for a missing field its parent path and the name serde
/// gives in the message.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (missing, parent) {
        (Some(name), "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "") => "body".to_owned(),
        (None, parent) => parent.to_owned(),
    }
}

/// An integer id in the path; anything else is a record that is not there.
pub(crate) struct Id(pub i32);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("not found"))?;
        raw.parse::<i32>()
            .ok()
            .filter(|id| *id > 0)
            .map(Id)
            .ok_or_else(|| ApiError::not_found("not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_one_subdomain_label_of_the_base_domain() {
        let s = |h: &str| subdomain_of(h, "localhost");
        assert_eq!(s("acme.localhost:8080").as_deref(), Some("acme"));
        assert_eq!(s("ACME.LocalHost").as_deref(), Some("acme"));
        assert_eq!(s("acme.localhost.").as_deref(), Some("acme"));
        for bad in [
            "localhost",
            "localhost:8080",
            "a.b.localhost",
            "127.0.0.1:8080",
            "[::1]:8080",
            ".localhost",
            "acme.example.com",
            "acmelocalhost",
            "",
        ] {
            assert_eq!(s(bad), None, "{bad}");
        }
        assert_eq!(
            subdomain_of("acme.crm.example.com", "crm.example.com").as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            email: String,
            admin: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            age: i32,
        }
        let field = |json: &str| match parse_json::<Body>(json.as_bytes()) {
            Err(e) => (e.status().as_u16(), format!("{e:?}")),
            Ok(_) => (200, String::new()),
        };
        let (status, debug) = field(r#"{"email": 5, "admin": {"age": 1}}"#);
        assert_eq!(status, 422);
        assert!(debug.contains("field: \"email\""), "{debug}");
        let (status, debug) = field(r#"{"email": "x", "admin": {"age": "old"}}"#);
        assert_eq!(status, 422);
        assert!(debug.contains("field: \"admin.age\""), "{debug}");
        let (_, debug) = field(r#"{"admin": {"age": 1}}"#);
        assert!(debug.contains("field: \"email\""), "{debug}");
        let (_, debug) = field(r#"{"email": "x", "admin": {"age": 1, "x": 2}}"#);
        assert!(debug.contains("field: \"admin.x\""), "{debug}");
        assert_eq!(field("{nope").0, 400);
        assert_eq!(field("").0, 400);
        assert_eq!(
            field(r#"{"email": "x", "admin": {"age": 1}} trailing"#).0,
            400
        );
    }
}
