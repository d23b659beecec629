//! Saved views: a list page's address under a name, for oneself or for
//! the whole organisation. The address is the view (filters, sort and
//! search live in the query string), so a view is only checked to be an
//! address of a list page; the list reads its parameters as always.

use atrium_domain::{Action, Invalid};
use atrium_store::TenantTx;
use atrium_store::saved_views::{self, SavedView};

use crate::{CurrentUser, Problems, ServiceError};

/// The list pages a view can be of.
pub const VIEW_PAGES: [&str; 3] = ["/contacts", "/companies", "/deals"];

/// The longest query string a view keeps.
const MAX_QUERY: usize = 2000;

pub struct NewView<'a> {
    pub name: &'a str,
    pub path: &'a str,
    /// The page's query string, without `?`.
    pub query: &'a str,
    pub shared: bool,
}

fn check_path(path: &str) -> Result<(), Invalid> {
    if VIEW_PAGES.contains(&path) {
        Ok(())
    } else {
        Err(Invalid::new(
            "path",
            format!("must be one of {}", VIEW_PAGES.join(", ")),
        ))
    }
}

/// The views of a list page this person sees: their own and the shared.
pub async fn visible(
    tx: &TenantTx,
    me: &CurrentUser,
    path: &str,
) -> Result<Vec<SavedView>, ServiceError> {
    check_path(path)?;
    Ok(saved_views::visible(tx, me.id(), path).await?)
}

/// The query string as a view keeps it: every parameter but the page
/// cursor (a view starts at its first page) and empty ones.
fn kept_query(raw: &str) -> String {
    let pairs = form_urlencoded::parse(raw.trim_start_matches('?').as_bytes())
        .filter(|(k, v)| k != "cursor" && !v.is_empty());
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub async fn save(
    tx: &TenantTx,
    me: &CurrentUser,
    new: NewView<'_>,
) -> Result<SavedView, ServiceError> {
    let mut problems = Problems::default();
    let name = new.name.trim();
    if name.is_empty() {
        problems.push(Invalid::new("name", "is required"));
    } else if name.chars().count() > 100 {
        problems.push(Invalid::new("name", "must be at most 100 characters long"));
    } else if name.chars().any(char::is_control) {
        problems.push(Invalid::new("name", "must not contain control characters"));
    }
    if let Err(invalid) = check_path(new.path) {
        problems.push(invalid);
    }
    let query = kept_query(new.query);
    if query.len() > MAX_QUERY {
        problems.push(Invalid::new(
            "query",
            format!("must be at most {MAX_QUERY} characters long"),
        ));
    }
    problems.into_result()?;
    Ok(saved_views::insert(tx, name, new.path, &query, new.shared, me.id()).await?)
}

/// Deletes a view: one's own, or, for an admin, a shared one. Returns
/// what it was.
pub async fn delete(tx: &TenantTx, me: &CurrentUser, id: i32) -> Result<SavedView, ServiceError> {
    let view = saved_views::get(tx, id)
        .await?
        .filter(|v| v.created_by == me.id() || v.shared)
        .ok_or_else(|| ServiceError::NotFound("view".into()))?;
    if view.created_by != me.id() {
        me.require(Action::UsersManage)?;
    }
    saved_views::delete(tx, id).await?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::kept_query;

    #[test]
    fn a_view_keeps_its_filters_but_not_its_page() {
        assert_eq!(
            kept_query("?q=ann&company_id=3&cursor=abc&owner_id="),
            "q=ann&company_id=3"
        );
        assert_eq!(kept_query("next_step=overdue"), "next_step=overdue");
    }
}
