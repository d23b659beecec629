//! Lists: `{"data": [...], "next_cursor": ...}`, keyset-paginated and
//! bounded, with `limit` (1–200, default 50) and an opaque `cursor`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use base64::Engine;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The query string of a request, parsed once, with typed getters that
/// answer 422 naming the parameter.
pub(crate) struct Query(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("the query string could not be read"))?;
        let mut pairs = HashMap::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if key.contains('\0') || value.contains('\0') {
                return Err(ApiError::invalid_field(
                    key.replace('\0', "\\u0000"),
                    crate::extract::NUL_MESSAGE,
                ));
            }
            if pairs.insert(key.to_string(), value.to_string()).is_some() {
                return Err(ApiError::invalid_field(
                    key.to_string(),
                    "may be given only once",
                ));
            }
        }
        Ok(Self(pairs))
    }
}

impl Query {
    pub fn all(&self) -> &HashMap<String, String> {
        &self.0
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn bool(&self, name: &str) -> ApiResult<bool> {
        match self.str(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(ApiError::invalid_field(name, "must be true or false")),
        }
    }

    pub fn limit(&self) -> ApiResult<i64> {
        match self.str("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    }

    /// The id after which an id-ordered list continues.
    pub fn id_cursor(&self) -> ApiResult<i32> {
        self.cursor(ID)
    }

    /// The position after which a short ordered list (stages, a summary
    /// per stage) continues.
    pub fn position_cursor(&self) -> ApiResult<i32> {
        self.cursor(POSITION)
    }

    fn cursor(&self, kind: &str) -> ApiResult<i32> {
        match self.str("cursor") {
            None | Some("") => Ok(0),
            Some(raw) => decode_cursor(kind, raw).ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor this list gave out")
            }),
        }
    }
}

const ID: &str = "id";
const POSITION: &str = "at";

pub(crate) fn encode_id_cursor(id: i32) -> String {
    encode_cursor(ID, id)
}

fn encode_cursor(kind: &str, n: i32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{n}"))
}

fn decode_cursor(kind: &str, raw: &str) -> Option<i32> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix(kind)?
        .strip_prefix(':')?
        .parse()
        .ok()
        .filter(|n| *n >= 0)
}

/// One page of a short list held whole in order (a pipeline's stages):
/// the cursor is the 1-based position of the page's last item.
pub(crate) fn position_page<T>(items: Vec<T>, query: &Query) -> ApiResult<Page<T>> {
    let (limit, after) = (query.limit()?, query.position_cursor()?);
    let rest = items.into_iter().skip(after as usize);
    let mut data: Vec<T> = rest.take(limit as usize + 1).collect();
    let more = data.len() as i64 > limit;
    data.truncate(limit as usize);
    Ok(Page {
        next_cursor: more.then(|| encode_cursor(POSITION, after + limit as i32)),
        data,
    })
}

/// A page from `limit + 1` rows ordered by id: the extra row only says
/// whether there is more.
pub(crate) fn id_page<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> i32,
    view: impl Fn(&R) -> T,
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Page {
        next_cursor: more
            .then(|| rows.last().map(|r| encode_id_cursor(id(r))))
            .flatten(),
        data: rows.iter().map(view).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(ID, &encode_id_cursor(42)), Some(42));
        assert_eq!(decode_cursor(POSITION, &encode_id_cursor(42)), None);
        for bad in ["x", "aWQ6", "aWQ6LTE", "bm9wZQ"] {
            assert_eq!(decode_cursor(ID, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_says_whether_more_follows() {
        let page = id_page(vec![1, 2, 3], 2, |r| *r, |r| *r);
        assert_eq!(page.data, vec![1, 2]);
        assert_eq!(
            page.next_cursor
                .as_deref()
                .and_then(|c| decode_cursor(ID, c)),
            Some(2)
        );
        let last = id_page(vec![1, 2], 2, |r| *r, |r| *r);
        assert_eq!(last.next_cursor, None);
    }
}
