//! Inviting people into a tenant.

use chrono::{DateTime, Utc};

use atrium_domain::{Action, Email, Password, Role};
use atrium_store::invitations::{self, Invitation};
use atrium_store::users::{self, NewUser};
use atrium_store::{TenantTx, outbox};

use crate::auth::{AuthSettings, Client, SignedIn};
use crate::users::parse_person;
use crate::{CurrentUser, Problems, Scope, ServiceError, passwords, tokens};

/// Builds the links put in emails. `public_url` may hold `{subdomain}`;
/// without it the tenant's subdomain is put in front of its host.
#[derive(Debug, Clone)]
pub struct Links {
    pub public_url: Option<String>,
    pub base_domain: String,
    pub port: u16,
    /// The server itself serves HTTPS: default links use it.
    pub https: bool,
}

impl Links {
    pub fn base(&self, subdomain: &str) -> String {
        match &self.public_url {
            Some(url) if url.contains("{subdomain}") => url.replace("{subdomain}", subdomain),
            Some(url) => match url.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{subdomain}.{rest}"),
                None => format!("{subdomain}.{url}"),
            },
            None => format!(
                "{}://{subdomain}.{}:{}",
                if self.https { "https" } else { "http" },
                self.base_domain,
                self.port
            ),
        }
        .trim_end_matches('/')
        .to_owned()
    }

    pub fn url(&self, subdomain: &str, page: &str, token: &str) -> String {
        format!("{}/{page}?token={token}", self.base(subdomain))
    }
}

pub struct Issued {
    pub invitation: Invitation,
    pub token: String,
    pub accept_url: String,
}

pub async fn create(
    tx: &TenantTx,
    me: &CurrentUser,
    settings: &AuthSettings,
    links: &Links,
    email: &str,
    role: &str,
) -> Result<Issued, ServiceError> {
    me.require(Action::UsersManage)?;
    let mut problems = Problems::default();
    let email = problems.check(Email::parse(email));
    let role = problems.check(Role::parse(role));
    problems.into_result()?;
    let (email, role) = (email.expect("checked"), role.expect("checked"));
    let issued = tokens::issue();
    let expires_at = Utc::now() + settings.invitation_lifetime;
    let invitation = invitations::create(
        tx,
        email.as_str(),
        role.as_str(),
        &issued.hash,
        expires_at,
        me.id(),
    )
    .await?;
    let tenant = tx.tenant();
    let accept_url = links.url(&tenant.subdomain, "accept-invitation", &issued.token);
    let body = format!(
        "Hello,\n\n{} {} invited you to join {} on Atrium as {}. \
         To accept, open this link before {}:\n\n{accept_url}\n",
        me.user.first_name,
        me.user.last_name,
        tenant.name,
        role.as_str(),
        expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    outbox::enqueue(
        tx,
        &outbox::NewEmail {
            to: email.as_str(),
            kind: "invitation",
            subject: &format!("You are invited to {} on Atrium", tenant.name),
            body: &body,
            token_expires_at: Some(expires_at),
        },
    )
    .await?;
    Ok(Issued {
        invitation,
        token: issued.token,
        accept_url,
    })
}

pub async fn list(
    tx: &TenantTx,
    me: &CurrentUser,
    after: i32,
    limit: i64,
) -> Result<Vec<Invitation>, ServiceError> {
    me.require(Action::UsersManage)?;
    Ok(invitations::list_pending(tx, after, limit).await?)
}

pub async fn revoke(tx: &TenantTx, me: &CurrentUser, id: i32) -> Result<(), ServiceError> {
    me.require(Action::UsersManage)?;
    if invitations::revoke(tx, id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("invitation".into()))
    }
}

/// What an invitee sees before accepting.
pub struct Preview {
    pub tenant_name: String,
    pub email: String,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    /// Who sent it, by name, while that user exists.
    pub inviter: Option<String>,
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("invitation".into())
}

pub async fn lookup(scope: &Scope, token: &str) -> Result<Preview, ServiceError> {
    let (found, inviter) = scope
        .run(async |tx| -> Result<_, ServiceError> {
            let found = invitations::find_usable(tx, &tokens::hash(token))
                .await?
                .ok_or_else(not_found)?;
            let inviter = match found.invited_by {
                Some(id) => users::get(tx, id, true)
                    .await?
                    .map(|u| format!("{} {}", u.first_name, u.last_name)),
                None => None,
            };
            Ok((found, inviter))
        })
        .await?;
    Ok(Preview {
        tenant_name: scope.tenant.name.clone(),
        email: found.email,
        role: found.role,
        expires_at: found.expires_at,
        inviter,
    })
}

/// Creates the invited user and signs them in; the token works once.
pub async fn accept(
    scope: &Scope,
    settings: &AuthSettings,
    token: &str,
    first_name: &str,
    last_name: &str,
    password: &str,
    client: Client<'_>,
) -> Result<SignedIn, ServiceError> {
    let mut problems = Problems::default();
    let names = parse_person(&mut problems, first_name, last_name);
    let password = problems.check(Password::parse(password));
    problems.into_result()?;
    let (first_name, last_name) = names.expect("checked");
    // Only a live invitation earns the (deliberately slow) hashing.
    let usable = scope
        .run(async |tx| invitations::find_usable(tx, &tokens::hash(token)).await)
        .await?;
    if usable.is_none() {
        return Err(not_found());
    }
    let hash = passwords::hash(&password.expect("checked")).await?;
    scope
        .run(async |tx| -> Result<SignedIn, ServiceError> {
            let invitation = invitations::accept(tx, &tokens::hash(token))
                .await?
                .ok_or_else(not_found)?;
            let new_user = NewUser {
                email: &invitation.email,
                password_hash: &hash,
                first_name: &first_name,
                last_name: &last_name,
                role: &invitation.role,
                email_verified: true,
                created_by: invitation.invited_by,
            };
            // Someone removed earlier comes back as the same user.
            let user = match users::revive(tx, &new_user).await? {
                Some(user) => user,
                None => users::insert(tx, &new_user).await?,
            };
            crate::auth::start_session_for(tx, settings, &user, &client).await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::Links;

    #[test]
    fn links_default_to_the_tenant_host_and_honour_the_public_url() {
        let mut links = Links {
            public_url: None,
            base_domain: "localhost".into(),
            port: 8080,
            https: false,
        };
        assert_eq!(
            links.url("acme", "accept-invitation", "t0k"),
            "http://acme.localhost:8080/accept-invitation?token=t0k"
        );
        links.https = true;
        assert_eq!(links.base("acme"), "https://acme.localhost:8080");
        links.public_url = Some("https://crm.example.com/".into());
        assert_eq!(links.base("acme"), "https://acme.crm.example.com");
        links.public_url = Some("https://app.example.com/{subdomain}".into());
        assert_eq!(links.base("acme"), "https://app.example.com/acme");
    }
}
