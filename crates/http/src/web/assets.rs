//! The stylesheet, compiled into the binary and served under a name that
//! carries a hash of its content, so browsers may keep it for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

/// `/assets/<stem>.<hash>.<extension>`: a new name whenever the content
/// changes.
fn hashed(stem: &str, extension: &str, content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("/assets/{stem}.{hash}.{extension}")
}

pub(crate) static CSS_PATH: LazyLock<String> = LazyLock::new(|| hashed("app", "css", CSS));
pub(crate) static JS_PATH: LazyLock<String> = LazyLock::new(|| hashed("app", "js", JS));

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let path = format!("/assets/{name}");
    let (content_type, body) = if path == *CSS_PATH {
        ("text/css; charset=utf-8", CSS)
    } else if path == *JS_PATH {
        ("text/javascript; charset=utf-8", JS)
    } else {
        return super::page::not_found_page();
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_assets_stay_under_100_kb() {
        assert!(super::CSS.len() + super::JS.len() < 100 * 1024);
    }
}
