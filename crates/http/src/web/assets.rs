//! The stylesheet, compiled into the binary and served under a name that
//! carries a hash of its content, so browsers may keep it for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("app.css");

/// `/assets/app.<hash>.css`
pub(crate) static CSS_PATH: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(CSS.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("/assets/app.{hash}.css")
});

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    if format!("/assets/{name}") != *CSS_PATH {
        return super::page::not_found_page().into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_assets_stay_under_100_kb() {
        assert!(super::CSS.len() < 100 * 1024);
    }
}
