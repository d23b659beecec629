//! Signing in and out, sessions, and passwords.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use atrium_domain::Password;
use atrium_store::session_cache::SessionCache;
use atrium_store::users::User;
use atrium_store::{TenantTx, outbox, password_resets, sessions, users};

use crate::{CurrentUser, Problems, Scope, ServiceError, passwords, tokens};

/// Lifetimes and links; see docs/architecture.md ("Sessions").
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// A session ends this long after sign-in, however active.
    pub session_absolute: Duration,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// `last_seen_at` is written at most this often per session.
    pub touch_interval: Duration,
    pub reset_token_lifetime: Duration,
    pub invitation_lifetime: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_absolute: Duration::from_secs(30 * 24 * 3600),
            session_idle: Duration::from_secs(7 * 24 * 3600),
            // Against an idle limit of 7 days, a clock 15 minutes late is
            // 0.15% off; a session in use writes 4 times an hour, not 60.
            touch_interval: Duration::from_secs(15 * 60),
            reset_token_lifetime: Duration::from_secs(3600),
            invitation_lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A new session: the token is shown to the user once.
pub struct SignedIn {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

/// Where a sign-in comes from, for the limiter and the session record.
pub struct Client<'a> {
    pub address: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
}

/// Limits on guessing, in memory and per server process (behind a load
/// balancer each process limits on its own; see docs/operations.md):
/// failed sign-ins per email and per client address, password reset
/// requests per email and per address, and wrong current passwords per
/// user. Every key names its tenant, so one noisy address (a proxy, an
/// office) cannot block sign-in to every organisation at once. Memory is
/// bounded: each window keeps its most recently used keys only.
pub struct LoginLimiter {
    sign_in: SlidingWindow,
    per_email: usize,
    per_address: usize,
    resets: SlidingWindow,
    password_changes: SlidingWindow,
}

/// Reset emails one address may ask for an hour (per tenant), and one
/// email address may be sent.
const RESETS_PER_EMAIL: usize = 5;
const RESETS_PER_ADDRESS: usize = 20;
/// Wrong current passwords a signed-in user may give in 15 minutes.
const PASSWORD_CHANGE_FAILURES: usize = 10;
/// Keys each window remembers; the least recently used go first. Each
/// key holds at most 50 instants (16 bytes each): about 1 KiB.
const MAX_KEYS: usize = 20_000;

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(Duration::from_secs(15 * 60), 10, 50)
    }
}

impl LoginLimiter {
    pub fn new(window: Duration, per_email: usize, per_address: usize) -> Self {
        Self {
            sign_in: SlidingWindow::new(window),
            per_email,
            per_address,
            resets: SlidingWindow::new(Duration::from_secs(3600)),
            password_changes: SlidingWindow::new(window),
        }
    }

    /// The keys of a sign-in (see [`email_and_address_keys`]).
    fn keys(
        &self,
        tenant_id: i32,
        email: &str,
        address: Option<IpAddr>,
    ) -> [(Option<String>, usize); 2] {
        email_and_address_keys(tenant_id, email, address, self.per_email, self.per_address)
    }
}

/// The keys of an attempt by email from an address, each with its limit:
/// the email only when it is one (a garbage string must not become a key),
/// and the address, both per tenant.
fn email_and_address_keys(
    tenant_id: i32,
    email: &str,
    address: Option<IpAddr>,
    per_email: usize,
    per_address: usize,
) -> [(Option<String>, usize); 2] {
    [
        (
            atrium_domain::Email::parse(email)
                .ok()
                .map(|e| format!("e:{tenant_id}:{}", e.as_str().to_lowercase())),
            per_email,
        ),
        (address.map(|a| format!("a:{tenant_id}:{a}")), per_address),
    ]
}

/// Attempts per key over a sliding window.
struct SlidingWindow {
    window: Duration,
    attempts: Mutex<lru::LruCache<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    fn new(window: Duration) -> Self {
        Self {
            window,
            attempts: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_KEYS).expect("positive"),
            )),
        }
    }

    /// Counts an attempt up front, under the same lock as the check, so
    /// parallel attempts cannot all slip past the limit; an attempt that
    /// turns out fine is given back with [`SlidingWindow::forgive`].
    /// Refuses when any key is at its limit, saying how long to wait.
    fn reserve(&self, keys: &[(Option<String>, usize)]) -> Result<Instant, ServiceError> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for (key, limit) in keys {
            let Some(key) = key else { continue };
            if let Some(times) = attempts.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                if times.len() >= *limit {
                    let oldest = times[times.len() - limit];
                    wait = wait.max(self.window.saturating_sub(now.duration_since(oldest)));
                }
            }
        }
        if !wait.is_zero() {
            return Err(ServiceError::RateLimited {
                retry_after_seconds: wait.as_secs().max(1),
            });
        }
        for (key, limit) in keys {
            let Some(key) = key else { continue };
            let times = attempts.get_or_insert_mut(key.clone(), VecDeque::new);
            times.push_back(now);
            while times.len() > *limit {
                times.pop_front();
            }
        }
        Ok(now)
    }

    /// Gives back an attempt reserved at `at`.
    fn forgive(&self, keys: &[(Option<String>, usize)], at: Instant) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in keys {
            let Some(key) = key else { continue };
            if let Some(times) = attempts.get_mut(key)
                && let Some(i) = times.iter().rposition(|t| *t == at)
            {
                times.remove(i);
            }
        }
    }

    #[cfg(test)]
    fn keys_kept(&self) -> usize {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A bcrypt hash (same cost as real ones) of a random password nobody has,
/// verified when the email is unknown so both failures take the same time.
async fn dummy_hash() -> Result<&'static str, ServiceError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let hash = DUMMY
        .get_or_try_init(|| async {
            let password =
                Password::parse(&passwords::generate()).expect("generated passwords are valid");
            passwords::hash(&password).await
        })
        .await?;
    Ok(hash.as_str())
}

const BAD_CREDENTIALS: &str = "the email or password is wrong";

pub async fn login(
    scope: &Scope,
    settings: &AuthSettings,
    limiter: &LoginLimiter,
    email: &str,
    password: &str,
    client: Client<'_>,
) -> Result<SignedIn, ServiceError> {
    let keys = limiter.keys(scope.tenant.id, email, client.address);
    let attempt = limiter.sign_in.reserve(&keys)?;
    // Read, then verify outside any transaction: bcrypt is slow on purpose
    // and must not hold one of the tenant's connections.
    let found = scope
        .run(async |tx| users::find_for_login(tx, email).await)
        .await?;
    let (hash, user) = match &found {
        Some((user, hash)) => (hash.as_str(), Some(user)),
        None => (dummy_hash().await?, None),
    };
    let password_ok = passwords::verify(password, hash).await.unwrap_or(false);
    let Some(user) = user.filter(|u| password_ok && u.active) else {
        return Err(ServiceError::Unauthorized(BAD_CREDENTIALS.into()));
    };
    limiter.sign_in.forgive(&keys, attempt);
    scope
        .run(async |tx| start_session_for(tx, settings, user, &client).await)
        .await
}

pub(crate) async fn start_session_for(
    tx: &TenantTx,
    settings: &AuthSettings,
    user: &User,
    client: &Client<'_>,
) -> Result<SignedIn, ServiceError> {
    let issued = tokens::issue();
    let expires_at = Utc::now() + settings.session_absolute;
    let address = client.address.map(|a| a.to_string());
    sessions::create(
        tx,
        &sessions::NewSession {
            user_id: user.id,
            token_hash: &issued.hash,
            expires_at,
            user_agent: client.user_agent,
            ip: address.as_deref(),
        },
    )
    .await?;
    users::record_login(tx, user.id).await?;
    let user = users::get(tx, user.id, false)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))?;
    Ok(SignedIn {
        token: issued.token,
        expires_at,
        user,
    })
}

/// What a request will do in its transaction, as far as its commit is
/// concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestWrites {
    /// Reads only (`GET`, `HEAD`): the idle clock is its only write, and
    /// its commit need not wait for the WAL to reach the disk. A crash in
    /// the next fraction of a second may lose that clock write, and
    /// nothing else.
    Nothing,
    /// May change records: commits are durable, as always.
    Records,
}

/// Opens the request's transaction and finds the signed-in user for a
/// bearer token: from `remembered` when the session was found within the
/// last `touch_interval` and nothing has changed it since (see
/// [`SessionCache`]), else in the same round trip as the transaction's
/// start, remembering it. The idle clock is written at most once per
/// `touch_interval`.
pub async fn begin_authenticated(
    scope: &Scope,
    settings: &AuthSettings,
    remembered: &SessionCache,
    token: &str,
    writes: RequestWrites,
) -> Result<(TenantTx, CurrentUser), ServiceError> {
    let token_hash = tokens::hash(token);
    let writes_records = writes == RequestWrites::Records;
    if let Some(found) = remembered.get(&scope.tenant, &token_hash, settings.touch_interval) {
        let tx = scope.begin_as(writes_records).await?;
        return match CurrentUser::new(found.user, found.session_id) {
            Ok(me) => Ok((tx, me)),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        };
    }
    let idle_seconds = settings.session_idle.as_secs_f64();
    let read_started = std::time::Instant::now();
    let (tx, found) = scope
        .retry_moved(|scope| {
            let token_hash = &token_hash;
            async move {
                sessions::begin_authenticated(
                    &scope.db,
                    &scope.tenant,
                    scope.statement_timeout,
                    token_hash,
                    idle_seconds,
                    writes_records,
                )
                .await
            }
        })
        .await?;
    let result = async {
        let mut found = found.ok_or_else(|| {
            ServiceError::Unauthorized("the session is missing, expired or ended".into())
        })?;
        let idle = (Utc::now() - found.last_seen_at)
            .to_std()
            .unwrap_or_default();
        if idle > settings.touch_interval {
            // Spread over thousands of tenants, most reads come from a
            // session last seen over a minute ago: a WAL flush for each
            // would be the costliest part of a read.
            sessions::touch(&tx, found.session_id, writes_records).await?;
            found.last_seen_at = Utc::now();
        }
        remembered.remember(tx.tenant_arc(), &token_hash, &found, read_started);
        CurrentUser::new(found.user, found.session_id)
    }
    .await;
    match result {
        Ok(me) => Ok((tx, me)),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

pub async fn logout(tx: &TenantTx, me: &CurrentUser) -> Result<(), ServiceError> {
    sessions::revoke(tx, me.session_id).await?;
    Ok(())
}

/// Changes the signed-in user's password; their other sessions end.
pub async fn change_password(
    tx: &TenantTx,
    limiter: &LoginLimiter,
    me: &CurrentUser,
    current_password: &str,
    new_password: &str,
) -> Result<(), ServiceError> {
    let new_password = Password::parse_field("new_password", new_password)?;
    // A stolen session must not become a way to guess the password.
    let keys = [(
        Some(format!("u:{}:{}", tx.tenant().id, me.id())),
        PASSWORD_CHANGE_FAILURES,
    )];
    let attempt = limiter.password_changes.reserve(&keys)?;
    let hash = users::get_password_hash(tx, me.id())
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))?;
    if !passwords::verify(current_password, &hash).await? {
        return Err(ServiceError::Invalid(vec![atrium_domain::Invalid::new(
            "current_password",
            "is not your current password",
        )]));
    }
    limiter.password_changes.forgive(&keys, attempt);
    let new_hash = passwords::hash(&new_password).await?;
    users::set_password(tx, me.id(), &new_hash).await?;
    sessions::revoke_all_for_user(tx, me.id(), Some(me.session_id)).await?;
    password_resets::expire_all(tx, me.id()).await?;
    Ok(())
}

/// Queues a reset email when `email` belongs to an active user; says
/// nothing either way.
pub async fn request_password_reset(
    scope: &Scope,
    settings: &AuthSettings,
    limiter: &LoginLimiter,
    links: &crate::invitations::Links,
    email: &str,
    address: Option<IpAddr>,
) -> Result<(), ServiceError> {
    // Counted whether or not the email is a user's: a 429 tells nothing
    // about who has an account, and nobody's inbox is flooded.
    limiter.resets.reserve(&email_and_address_keys(
        scope.tenant.id,
        email,
        address,
        RESETS_PER_EMAIL,
        RESETS_PER_ADDRESS,
    ))?;
    scope
        .run(async |tx| -> Result<(), ServiceError> {
            let Some((user, _)) = users::find_for_login(tx, email).await? else {
                return Ok(());
            };
            if !user.active {
                return Ok(());
            }
            let issued = tokens::issue();
            let expires_at = Utc::now() + settings.reset_token_lifetime;
            password_resets::create(tx, user.id, &issued.hash, expires_at).await?;
            let link = links.url(&scope.tenant.subdomain, "reset-password", &issued.token);
            let body = format!(
                "Hello {},\n\nSomeone asked to reset your password for {} on Atrium. \
             To choose a new one, open this link within the hour:\n\n{link}\n\n\
             If it was not you, ignore this email: your password stays as it is.\n",
                user.first_name, scope.tenant.name
            );
            outbox::enqueue(
                tx,
                &outbox::NewEmail {
                    to: &user.email,
                    kind: "password_reset",
                    subject: &format!("Reset your {} password", scope.tenant.name),
                    body: &body,
                    token_expires_at: Some(expires_at),
                },
            )
            .await?;
            Ok(())
        })
        .await
}

/// Sets a new password with a reset token; the token works once and every
/// session of the user ends.
pub async fn confirm_password_reset(
    scope: &Scope,
    token: &str,
    new_password: &str,
) -> Result<(), ServiceError> {
    let mut problems = Problems::default();
    if token.is_empty() {
        problems.push(atrium_domain::Invalid::new("token", "is required"));
    }
    let new_password = problems.check(Password::parse_field("new_password", new_password));
    problems.into_result()?;
    let bad_token = || {
        ServiceError::Invalid(vec![atrium_domain::Invalid::new(
            "token",
            "is unknown, already used or expired",
        )])
    };
    // Only a live token earns the (deliberately slow) hashing.
    let usable = scope
        .run(async |tx| password_resets::is_usable(tx, &tokens::hash(token)).await)
        .await?;
    if !usable {
        return Err(bad_token());
    }
    let new_hash = passwords::hash(&new_password.expect("checked")).await?;
    scope
        .run(async |tx| -> Result<(), ServiceError> {
            let user_id = password_resets::consume(tx, &tokens::hash(token))
                .await?
                .ok_or_else(bad_token)?;
            users::set_password(tx, user_id, &new_hash).await?;
            sessions::revoke_all_for_user(tx, user_id, None).await?;
            password_resets::expire_all(tx, user_id).await?;
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in(
        limiter: &LoginLimiter,
        tenant: i32,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<Instant, ServiceError> {
        limiter.sign_in.reserve(&limiter.keys(tenant, email, ip))
    }

    #[test]
    fn the_limiter_counts_failures_per_email_and_per_address_of_each_tenant() {
        let limiter = LoginLimiter::new(Duration::from_secs(60), 3, 5);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            sign_in(&limiter, 1, "A@x.com", Some(ip)).unwrap();
        }
        match sign_in(&limiter, 1, "a@X.com", None) {
            Err(ServiceError::RateLimited {
                retry_after_seconds,
            }) => {
                assert!((1..=60).contains(&retry_after_seconds))
            }
            other => panic!("expected a limit, got {:?}", other.err()),
        }
        assert!(
            sign_in(&limiter, 2, "a@x.com", None).is_ok(),
            "another tenant's email"
        );
        sign_in(&limiter, 1, "b@x.com", Some(ip)).unwrap();
        sign_in(&limiter, 1, "c@x.com", Some(ip)).unwrap();
        assert!(
            sign_in(&limiter, 1, "d@x.com", Some(ip)).is_err(),
            "the address is at 5"
        );
        assert!(sign_in(&limiter, 1, "d@x.com", None).is_ok());
        assert!(
            sign_in(&limiter, 2, "d@x.com", Some(ip)).is_ok(),
            "the noisy address still signs in elsewhere"
        );
    }

    #[test]
    fn a_forgiven_attempt_does_not_count() {
        let limiter = LoginLimiter::new(Duration::from_secs(60), 2, 50);
        for _ in 0..5 {
            let keys = limiter.keys(1, "ok@x.com", None);
            let at = limiter.sign_in.reserve(&keys).unwrap();
            limiter.sign_in.forgive(&keys, at);
        }
        assert!(sign_in(&limiter, 1, "ok@x.com", None).is_ok());
    }

    #[test]
    fn garbage_emails_make_no_keys_and_the_keys_kept_are_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..1000 {
            sign_in(&limiter, 1, &format!("not an email {i}"), None).unwrap();
        }
        assert_eq!(limiter.sign_in.keys_kept(), 0);
        for i in 0..MAX_KEYS + 500 {
            sign_in(&limiter, 1, &format!("u{i}@x.com"), None).unwrap();
        }
        assert_eq!(limiter.sign_in.keys_kept(), MAX_KEYS);
    }

    #[tokio::test]
    async fn the_dummy_hash_is_a_real_bcrypt_hash_of_the_same_cost() {
        let hash = dummy_hash().await.unwrap();
        assert!(hash.starts_with("$2b$10$"));
        assert!(!passwords::verify("anything at all", hash).await.unwrap());
    }
}
