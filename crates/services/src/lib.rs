//! Use cases. Each combines domain rules and store calls; the HTTP handlers
//! and CLI commands are thin adapters over these, so they cannot disagree.

pub mod auth;
pub mod capacity;
pub mod contacts_csv;
pub mod custom_fields;
pub mod demo;
pub mod invitations;
pub mod mail;
pub mod maintain;
pub mod operator;
pub mod passwords;
pub mod pipeline;
pub mod records;
pub mod saved_views;
mod scope;
pub mod tenants;
pub mod tokens;
pub mod users;

pub use scope::{CurrentUser, Placement, Scope};

use atrium_domain::Invalid;
use atrium_store::StoreError;

/// What a use case reports to its caller, who maps it to HTTP or to an exit
/// code in exactly one place each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Invalid>),
    #[error("{0}")]
    Conflict(String),
    /// The input is larger than the use case takes (rows of an import).
    #[error("{0}")]
    TooLarge(String),
    /// A file given as a whole (an archive, a backup) is damaged.
    #[error("{0}")]
    Damaged(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Not signed in, or the credentials are wrong (one answer for both).
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many attempts; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    /// `If-Match` names another version of the record.
    #[error("the record changed since it was read")]
    PreconditionFailed,
    /// The tenant is using every connection its tier allows.
    #[error("the service is busy; retry shortly")]
    Busy,
    /// The tenant is being moved between clusters and could not be
    /// reached where the registry placed it, even after asking again.
    #[error("this organisation is moving; retry shortly")]
    Moving,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ServiceError {
    pub(crate) fn from_store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound(what.to_owned()),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Busy => Self::Busy,
            StoreError::Moved => Self::Moving,
            StoreError::Damaged(m) => Self::Damaged(m),
            StoreError::Other(e) => Self::Other(e),
        }
    }

    pub(crate) fn forbidden() -> Self {
        Self::Forbidden("you are not allowed to do this".into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::from_store(e, "record")
    }
}

impl From<Invalid> for ServiceError {
    fn from(e: Invalid) -> Self {
        Self::Invalid(vec![e])
    }
}

/// Gathers every field's problem before refusing, so one answer names them
/// all.
#[derive(Default)]
pub(crate) struct Problems(Vec<Invalid>);

impl Problems {
    pub(crate) fn push(&mut self, problem: Invalid) {
        self.0.push(problem);
    }

    pub(crate) fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub(crate) fn into_result(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(self.0))
        }
    }
}
