//! Atrium's domain: plain types and rules, no I/O.
//!
//! Values are parsed at the edge (HTTP, CLI) into these types; past the edge a
//! value of the type is valid by construction.

mod access;
pub mod custom_fields;
pub mod decimal;
mod email;
pub mod latency;
mod password;
pub mod pipeline;
pub mod records;
mod subdomain;
mod tenant;

pub use access::{Access, Action, Permissions, Role};
pub use email::Email;
pub use password::Password;
pub use subdomain::Subdomain;
pub use tenant::{TenantStatus, Tier};

use std::borrow::Cow;

/// Why a value was refused: which field, and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: Cow<'static, str>,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a text holding U+0000 is told, wherever it came from (JSON, CSV,
/// a query string): PostgreSQL cannot store that character in `text`.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";
