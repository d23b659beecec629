//! Saved views on the list pages: the page's address under a name, kept
//! for oneself or shared with the team. Saving takes the address as it
//! is (filters, sort, search), so a view is opened like any link.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use maud::{Markup, html};

use atrium_services::saved_views::{self, NewView};
use atrium_store::saved_views::SavedView;

use super::forms::csrf_field;
use super::records::posted;
use super::session::SignedIn;
use super::{PageResult, WebError, see_other};
use crate::error::ApiError;

/// The address of a view.
fn href(view: &SavedView) -> String {
    if view.query.is_empty() {
        view.path.clone()
    } else {
        format!("{}?{}", view.path, view.query)
    }
}

/// The list page's views, and the form that saves the page as it is now.
pub(crate) fn panel(
    path: &str,
    query: &HashMap<String, String>,
    views: &[SavedView],
    me: i32,
    csrf: &str,
) -> Markup {
    let current: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            query
                .iter()
                .filter(|(k, v)| *k != "cursor" && !v.is_empty()),
        )
        .finish();
    html! {
        div.views {
            @if !views.is_empty() {
                nav aria-label="Saved views" {
                    ul.plain.inline-list {
                        @for view in views {
                            li {
                                a href=(href(view)) aria-current=[(view.query == current).then_some("page")] { (view.name) }
                                @if view.shared { " " span.muted { "(shared)" } }
                                @if view.created_by == me {
                                    form.inline-delete method="post" action=(format!("/views/{}/delete", view.id)) {
                                        (csrf_field(csrf))
                                        button.link type="submit" aria-label=(format!("Delete view {}", view.name)) { "×" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            details.save-view {
                summary { "Save this view" }
                form.inline method="post" action="/views" {
                    (csrf_field(csrf))
                    input type="hidden" name="path" value=(path);
                    input type="hidden" name="query" value=(current);
                    label for="view-name" { "View name" }
                    input id="view-name" name="name" type="text" maxlength="100" required;
                    label.check for="view-shared" {
                        input id="view-shared" name="shared" type="checkbox" value="true";
                        " Share with the team"
                    }
                    button type="submit" { "Save view" }
                }
            }
        }
    }
}

/// Saves the page's address under a name, then opens the view.
pub(crate) async fn save(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (authed, _, form) = posted(signed_in, form)?;
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let view = authed
        .run(async |tx, me| {
            saved_views::save(
                tx,
                me,
                NewView {
                    name: field("name"),
                    path: field("path"),
                    query: field("query"),
                    shared: field("shared") == "true",
                },
            )
            .await
        })
        .await?;
    Ok(see_other(&href(&view)))
}

/// Deletes one of my views (or, for an admin, a shared one), then goes
/// back to its page.
pub(crate) async fn delete(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id: i32 = id
        .parse()
        .map_err(|_| WebError::from(ApiError::not_found("no such view")))?;
    let (authed, _, _) = posted(signed_in, form)?;
    let view = authed
        .run(async |tx, me| saved_views::delete(tx, me, id).await)
        .await?;
    Ok(see_other(&view.path))
}
