//! The start page: on the base host, the question of which organisation;
//! on a tenant host, the home page of the person signed in.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use maud::html;
use serde_json::Value;

use atrium_domain::Subdomain;
use atrium_services::pipeline;
use atrium_services::records::{self, ACTIVITY, ListRequest};
use atrium_store::pipeline::DealCard;

use super::page::{Viewer, layout, respond};
use super::session::SignedIn;
use super::{PageResult, see_other};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::subdomain_of;

/// How many items each list of the home page shows.
const HOME_LIST: i64 = 10;

pub(crate) async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    signed_in: Result<SignedIn, super::WebError>,
) -> PageResult {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if subdomain_of(host, &state.settings.base_domain).is_none() {
        return organisation_page(&state, &query);
    }
    home(signed_in?).await
}

/// The base host asks which organisation, then sends the person to its
/// sign-in page.
fn organisation_page(state: &AppState, query: &HashMap<String, String>) -> PageResult {
    let given = query
        .get("organisation")
        .map(|s| s.trim().to_ascii_lowercase());
    let mut problem = None;
    if let Some(given) = given.as_deref().filter(|g| !g.is_empty()) {
        match Subdomain::parse(given) {
            Ok(subdomain) => {
                let url = format!("{}/sign-in", state.links.base(subdomain.as_str()));
                return Ok(see_other(&url));
            }
            Err(_) => {
                problem =
                    Some("That is not an organisation address. Use letters, digits and hyphens.")
            }
        }
    }
    let page = layout(
        "Sign in to your organisation",
        "",
        None,
        html! {
            @if let Some(problem) = problem {
                p.alert role="alert" { (problem) }
            }
            form.stack.card method="get" action="/" {
                div {
                    label for="organisation" { "Your organisation" }
                    input id="organisation" name="organisation" type="text" autocomplete="organization"
                        required value=(given.unwrap_or_default());
                    p.muted { "The first part of your organisation's Atrium address, such as " code { "acme" } "." }
                }
                div { button type="submit" { "Continue" } }
            }
        },
    );
    Ok(respond(StatusCode::OK, page))
}

fn past_tense(action: &str) -> &'static str {
    match action {
        "create" => "created",
        "delete" => "deleted",
        "restore" => "restored",
        _ => "changed",
    }
}

fn text<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field].as_str().unwrap_or_default()
}

async fn home(signed_in: SignedIn) -> PageResult {
    let SignedIn { authed, csrf } = signed_in;
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .to_rfc3339();
    let (name, due, deals, recent) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let mine = me.id().to_string();
            let list = async |entity, params: &[(&str, &str)]| {
                let params: HashMap<String, String> = params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                let request = ListRequest {
                    params: &params,
                    limit: HOME_LIST,
                    include_deleted: false,
                };
                records::list::<Value>(tx, me, entity, request)
                    .await
                    .map(|p| p.data)
            };
            let due = list(
                &ACTIVITY,
                &[
                    ("owner_id", &mine),
                    ("open", "true"),
                    ("due_before", &tomorrow),
                ],
            )
            .await?;
            // My deals in open stages, with where their next step stands.
            let params: HashMap<String, String> = [("owner_id".to_owned(), mine.clone())].into();
            let deals: Vec<DealCard> = pipeline::board(tx, &params, HOME_LIST)
                .await?
                .into_iter()
                .filter(|column| column.kind == "open")
                .flat_map(|column| column.cards)
                .take(HOME_LIST as usize)
                .collect();
            let recent = records::recently_changed(tx, HOME_LIST).await?;
            let name = super::page::person(&me.user);
            Ok((name, due, deals, recent))
        })
        .await?;
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let page = layout(
        "Home",
        "/",
        Some(&viewer),
        html! {
            div.grid {
                section.card aria-labelledby="due" {
                    h2 id="due" { "Due today or overdue" }
                    @if due.is_empty() {
                        p.muted { "Nothing is due. " a href="/activities" { "All activities" } }
                    } @else {
                        ul.plain {
                            @for activity in &due {
                                li {
                                    strong { (text(activity, "subject")) }
                                    " "
                                    span.muted { "(" (text(activity, "kind")) ", due " (text(activity, "due_at").get(..10).unwrap_or_default()) ")" }
                                }
                            }
                        }
                    }
                }
                section.card aria-labelledby="deals" {
                    h2 id="deals" { "My open deals" }
                    @if deals.is_empty() {
                        p.muted { "You own no open deals. " a href="/deals" { "The pipeline" } }
                    } @else {
                        ul.plain {
                            @for deal in &deals {
                                li {
                                    a href=(format!("/deals/{}", deal.id)) { (deal.title) }
                                    " "
                                    span.muted { (deal.stage) " · " }
                                    span class=(format!("badge step-{}", deal.next_step.as_str())) { (deal.next_step.describe()) }
                                }
                            }
                        }
                    }
                }
                section.card aria-labelledby="recent" {
                    h2 id="recent" { "Recently changed" }
                    @if recent.is_empty() {
                        p.muted { "Nothing has changed yet. " a href="/contacts/new" { "Add a contact" } }
                    } @else {
                        ul.plain {
                            @for change in &recent {
                                li {
                                    a href=(format!("/{}/{}", change.entity.table, change.id)) { (change.title) }
                                    " "
                                    span.muted { "(" (change.entity.name) ", " (past_tense(&change.action)) " " (change.at) ")" }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(respond(StatusCode::OK, page))
}
