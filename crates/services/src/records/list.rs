//! Lists of records: the query string read against the record type's
//! definition (sort, filters, search, custom fields) into typed
//! conditions, and keyset cursors bound to their sort.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value, json};

use atrium_domain::Invalid;
use atrium_domain::records::{Datum, Entity, Test};
use atrium_store::TenantTx;
use atrium_store::records::{self, Condition, ListQuery, Record};

use crate::{CurrentUser, Problems, ServiceError};

/// A list request as it arrives: the query string's parameters.
pub struct ListRequest<'a> {
    pub params: &'a HashMap<String, String>,
    pub limit: i64,
    pub include_deleted: bool,
}

pub struct RecordPage<T = Value> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// What a search pages by, in its cursors.
const RELEVANCE: &str = "relevance";

fn encode_cursor(sort: &str, value: &str, id: i32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([sort, value, id]).to_string())
}

fn decode_cursor(raw: &str, sort: &str) -> Option<(String, i32)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let [s, v, id] = value.as_array()?.as_slice() else {
        return None;
    };
    (s.as_str()? == sort).then_some(())?;
    Some((v.as_str()?.to_owned(), i32::try_from(id.as_i64()?).ok()?))
}

/// The value of one of the record type's filters, if the query gives it.
pub(crate) fn filter_value(
    entity: &Entity,
    param: &'static str,
    params: &HashMap<String, String>,
    problems: &mut Problems,
) -> Option<Datum> {
    let filter = entity.filters.iter().find(|f| f.param == param)?;
    let field = entity.field(filter.column)?;
    problems.check(field.parse_filter(param, params.get(param)?))
}

/// The record type's filters and search, as the query gives them.
fn conditions(
    entity: &Entity,
    params: &HashMap<String, String>,
    problems: &mut Problems,
) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(search) = entity.search
        && let Some(q) = params.get("q").filter(|q| !q.trim().is_empty())
    {
        out.push(Condition::Search {
            search,
            text: q.clone(),
        });
    }
    for filter in entity.filters {
        let Some(raw) = params.get(filter.param) else {
            continue;
        };
        let condition = match filter.test {
            Test::Unset => match raw.as_str() {
                "true" | "false" => Some(Condition::Unset {
                    column: filter.column,
                    unset: raw == "true",
                }),
                _ => {
                    problems.push(Invalid::new(filter.param, "must be true or false"));
                    None
                }
            },
            test => filter_value(entity, filter.param, params, problems).map(|value| {
                Condition::Column {
                    column: filter.column,
                    test,
                    value,
                }
            }),
        };
        out.extend(condition);
    }
    out
}

/// `cf.<key>=<value>` filters, each checked against its definition.
async fn custom_field_conditions(
    tx: &TenantTx,
    entity: &Entity,
    params: &HashMap<String, String>,
    problems: &mut Problems,
) -> Result<Vec<Condition>, ServiceError> {
    let wanted: Vec<(&String, &String)> = params
        .iter()
        .filter(|(k, _)| k.starts_with("cf."))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let defs = match entity.custom {
        Some(custom) => super::custom::load(tx, custom).await?,
        None => HashMap::new(),
    };
    let mut out = Vec::new();
    for (key, raw) in wanted {
        match defs.get(&key[3..]) {
            None => problems.push(Invalid::new(key.clone(), "is not a defined custom field")),
            Some(def) => {
                if let Some(value) = problems.check(def.filter_value(raw)) {
                    out.push(Condition::CustomFieldsContain(value));
                }
            }
        }
    }
    Ok(out)
}

pub async fn list<T: Record>(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    request: ListRequest<'_>,
) -> Result<RecordPage<T>, ServiceError> {
    crate::users::check_include_deleted(me, request.include_deleted)?;
    let params = request.params;
    let mut problems = Problems::default();
    let sort_name = params
        .get("sort")
        .map(String::as_str)
        .unwrap_or(entity.sorts[0].name);
    let sort = *entity.sort(sort_name).unwrap_or_else(|| {
        let known: Vec<&str> = entity.sorts.iter().map(|s| s.name).collect();
        problems.push(Invalid::new(
            "sort",
            format!("must be one of {}", known.join(", ")),
        ));
        &entity.sorts[0]
    });
    let mut conditions = conditions(entity, params, &mut problems);
    // A search pages by relevance, whatever `sort` says.
    let cursor_kind = if conditions.iter().any(Condition::ranks) {
        RELEVANCE
    } else {
        sort.name
    };
    let after = match params.get("cursor").filter(|c| !c.is_empty()) {
        Some(raw) => {
            let decoded = decode_cursor(raw, cursor_kind);
            if decoded.is_none() {
                problems.push(Invalid::new(
                    "cursor",
                    "is not a cursor this list gave out for this sort",
                ));
            }
            decoded
        }
        None => None,
    };
    conditions.extend(custom_field_conditions(tx, entity, params, &mut problems).await?);
    problems.into_result()?;
    let mut rows = records::list(
        tx,
        entity,
        &ListQuery {
            conditions,
            sort,
            after,
            limit: request.limit + 1,
            include_deleted: request.include_deleted,
        },
    )
    .await?;
    let more = rows.len() as i64 > request.limit;
    rows.truncate(request.limit as usize);
    Ok(RecordPage {
        next_cursor: more
            .then(|| {
                rows.last()
                    .map(|(_, value, id)| encode_cursor(cursor_kind, value, *id))
            })
            .flatten(),
        data: rows.into_iter().map(|(record, _, _)| record).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_sort() {
        let c = encode_cursor("name", "Acme", 7);
        assert_eq!(decode_cursor(&c, "name"), Some(("Acme".into(), 7)));
        assert_eq!(decode_cursor(&c, "-created_at"), None);
        assert_eq!(decode_cursor("garbage", "name"), None);
    }
}
