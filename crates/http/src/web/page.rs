//! The page every screen is drawn in, and the error pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets::{CSS_PATH, JS_PATH};
use crate::error::ApiError;

/// Who the page is for, when someone is signed in: their name for the
/// header and the token the sign-out form carries.
pub(crate) struct Viewer<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
}

/// The main sections, in the order of the navigation.
const SECTIONS: &[(&str, &str)] = &[
    ("/", "Home"),
    ("/contacts", "Contacts"),
    ("/companies", "Companies"),
    ("/deals", "Deals"),
    ("/activities", "Activities"),
    ("/settings", "Settings"),
];

/// A whole page: one `<h1>` (the title), the navigation when signed in,
/// the content in `<main>`.
pub(crate) fn layout(
    title: &str,
    current: &str,
    viewer: Option<&Viewer>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Atrium" }
                link rel="stylesheet" href=(CSS_PATH.as_str());
                script src=(JS_PATH.as_str()) defer {}
            }
            body {
                a.skip href="#content" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Atrium" }
                    @if let Some(viewer) = viewer {
                        nav.main aria-label="Main" {
                            ul {
                                @for (path, name) in SECTIONS {
                                    li {
                                        a href=(path) aria-current=[(*path == current).then_some("page")] { (name) }
                                    }
                                }
                            }
                        }
                        span.muted { (viewer.name) }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main id="content" class=[viewer.is_none().then_some("narrow")] {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// A person as pages name them.
pub(crate) fn person(user: &atrium_store::users::User) -> String {
    format!("{} {}", user.first_name, user.last_name)
}

/// An HTML answer with a status.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    (status, Html(page.into_string())).into_response()
}

fn error_page(status: StatusCode, title: &str, message: &str, request_id: Option<&str>) -> Markup {
    layout(
        title,
        "",
        None,
        html! {
            p { (message) }
            @if let Some(id) = request_id {
                p.muted { "Request id: " code { (id) } }
            }
            p { a href="/" { "Go to the start page" } }
            @if status == StatusCode::SERVICE_UNAVAILABLE {
                p.muted { "Please try again in a moment." }
            }
        },
    )
}

pub(crate) fn not_found_page() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        error_page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing here. The link may be old, or the page was removed.",
            None,
        ),
    )
}

/// What a failure looks like in the browser: the same status as the API
/// would answer, as a page of the application.
pub(crate) fn error_response(error: &ApiError, request_id: Option<&str>) -> Response {
    let status = error.status();
    let (title, message) = match (status, error.code()) {
        (_, "tenant_not_found") => (
            "Organisation not found",
            "No organisation uses this address. Check the link you followed.",
        ),
        (_, "tenant_suspended") => (
            "Organisation suspended",
            "This organisation is suspended. Ask its administrator or the operator.",
        ),
        (_, "maintenance") => ("Down for maintenance", error.detail()),
        (StatusCode::FORBIDDEN, _) => ("Not allowed", "You are not allowed to do this."),
        (StatusCode::NOT_FOUND, _) => (
            "Page not found",
            "There is nothing here. The link may be old, or the page was removed.",
        ),
        (StatusCode::TOO_MANY_REQUESTS, _) => ("Too many requests", error.detail()),
        (StatusCode::SERVICE_UNAVAILABLE, _) => ("Busy right now", error.detail()),
        (status, _) if status.is_server_error() => (
            "Something went wrong",
            "Something went wrong on our side. The request id below names it in our logs.",
        ),
        _ => ("Something is not right", error.detail()),
    };
    let mut response = respond(status, error_page(status, title, message, request_id));
    if let Some(seconds) = error.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
