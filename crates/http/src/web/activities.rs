//! My activities: what is overdue, what is due today, what comes next,
//! each open one with a "Done" button.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use atrium_domain::records::{ACTIVITY, ACTIVITY_KINDS};
use atrium_services::records::{self, ListRequest};
use atrium_services::users;

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::SignedIn;
use super::{PageResult, WebError, id_of, see_other};
use crate::error::ApiError;

/// Open activities the page sorts into its three lists.
const OPEN_SHOWN: i64 = 200;

fn activity_list(items: &[&Value], csrf: &str) -> Markup {
    html! {
        @if items.is_empty() {
            p.muted { "None." }
        } @else {
            ul.plain {
                @for activity in items {
                    li.activity {
                        div {
                            a href=(format!("/activities/{}", activity["id"])) { (activity["subject"].as_str().unwrap_or_default()) }
                            " "
                            span.muted {
                                (activity["kind"].as_str().unwrap_or_default())
                                @if let Some(due) = activity["due_at"].as_str() {
                                    ", due " (due.get(..16).unwrap_or(due).replace('T', " "))
                                }
                            }
                        }
                        form method="post" action=(format!("/activities/{}/done", activity["id"])) {
                            (csrf_field(csrf))
                            button.quiet type="submit" { "Done" }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn page(
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let kind = query.get("kind").cloned().unwrap_or_default();
    let owner = query.get("owner_id").cloned();
    let (name, open, people, owner) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let owner = owner.unwrap_or_else(|| me.id().to_string());
            let mut params: HashMap<String, String> = [
                ("open".to_owned(), "true".to_owned()),
                ("owner_id".to_owned(), owner.clone()),
            ]
            .into();
            if !kind.is_empty() {
                params.insert("kind".into(), kind.clone());
            }
            let page = records::list::<Value>(
                tx,
                me,
                &ACTIVITY,
                ListRequest {
                    params: &params,
                    limit: OPEN_SHOWN,
                    include_deleted: false,
                },
            )
            .await?;
            let people: Vec<(String, String)> = users::list(tx, me, 0, 200, false)
                .await?
                .into_iter()
                .map(|u| (u.id.to_string(), super::page::person(&u)))
                .collect();
            let name = super::page::person(&me.user);
            Ok((name, page.data, people, owner))
        })
        .await?;
    let now = chrono::Utc::now();
    let tomorrow = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let due = |a: &Value| {
        a["due_at"]
            .as_str()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    };
    let overdue: Vec<&Value> = open
        .iter()
        .filter(|a| due(a).is_some_and(|d| d < now))
        .collect();
    let today: Vec<&Value> = open
        .iter()
        .filter(|a| due(a).is_some_and(|d| d >= now && d < tomorrow))
        .collect();
    let upcoming: Vec<&Value> = open
        .iter()
        .filter(|a| due(a).is_none_or(|d| d >= tomorrow))
        .collect();
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let content = html! {
        div.toolbar {
            form.search method="get" action="/activities" {
                div {
                    label for="kind" { "Kind" }
                    select id="kind" name="kind" {
                        option value="" { "Any" }
                        @for k in ACTIVITY_KINDS { option value=(k) selected[*k == kind] { (k) } }
                    }
                }
                div {
                    label for="owner" { "Person" }
                    select id="owner" name="owner_id" {
                        @for (id, person) in &people { option value=(id) selected[*id == owner] { (person) } }
                    }
                }
                button type="submit" { "Filter" }
            }
            a.button href="/activities/new" { "New activity" }
        }
        div.grid {
            section.card aria-labelledby="overdue" {
                h2 id="overdue" { "Overdue" }
                (activity_list(&overdue, &csrf))
            }
            section.card aria-labelledby="today" {
                h2 id="today" { "Today" }
                (activity_list(&today, &csrf))
            }
            section.card aria-labelledby="upcoming" {
                h2 id="upcoming" { "Upcoming" }
                (activity_list(&upcoming, &csrf))
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout("Activities", "/activities", Some(&viewer), content),
    ))
}

pub(crate) async fn done(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, _, _) = super::records::posted(signed_in, form)?;
    authed
        .run(async |tx, me| records::complete_activity(tx, me, id).await)
        .await?;
    Ok(see_other("/activities"))
}
