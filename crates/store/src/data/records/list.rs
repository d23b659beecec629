//! Lists of records: typed conditions made into SQL here, and only here,
//! keyset paging by the sort column or by relevance.

use serde_json::Value;
use tokio_postgres::types::ToSql;

use atrium_domain::records::{Datum, Entity, Search, SortOption, Test};

use super::{Record, column_cast, record_json};
use crate::{StoreError, TenantTx};

/// One condition a list's rows meet. Columns are fields of the entity's
/// definition, never a request's text.
#[derive(Debug, Clone)]
pub enum Condition {
    /// `column` compared with `value` by `test`.
    Column {
        column: &'static str,
        test: Test,
        value: Datum,
    },
    /// `column` is empty (`true`) or set (`false`).
    Unset { column: &'static str, unset: bool },
    /// What the entity's search finds for this text.
    Search { search: Search, text: String },
    /// The custom fields hold every key and value of this object.
    CustomFieldsContain(Value),
}

pub struct ListQuery {
    pub conditions: Vec<Condition>,
    pub sort: SortOption,
    /// The sort value (as text) and id of the last row of the previous page.
    pub after: Option<(String, i32)>,
    pub limit: i64,
    pub include_deleted: bool,
}

impl ListQuery {
    /// Whether a condition searches: what it finds, and so the best plan,
    /// depends on the text searched for.
    fn searches(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| matches!(c, Condition::Search { .. }))
    }

    /// The condition whose relevance orders the rows, if one does.
    fn ranking(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.ranks())
    }
}

/// SQL text with its text parameters, numbered as they are pushed.
#[derive(Default)]
struct Sql {
    params: Vec<Option<String>>,
}

impl Sql {
    /// The parameters, as a statement takes them.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|v| v as &(dyn ToSql + Sync))
            .collect()
    }

    /// `$n` for a value: every parameter is text, so a value bound before
    /// is the same parameter (a search's words appear in its condition and
    /// in its rank; PostgreSQL then sees one expression where they meet).
    fn bind(&mut self, value: impl Into<String>) -> String {
        let value = Some(value.into());
        let n = match self.params.iter().position(|p| *p == value) {
            Some(i) => i + 1,
            None => {
                self.params.push(value);
                self.params.len()
            }
        };
        format!("${n}")
    }
}

impl Condition {
    /// Whether rows come best first (the list then pages by relevance,
    /// whatever its sort).
    pub fn ranks(&self) -> bool {
        matches!(
            self,
            Self::Search {
                search: Search::Person,
                ..
            }
        )
    }

    fn sql(&self, entity: &Entity, sql: &mut Sql) -> String {
        match self {
            Self::Column {
                column,
                test,
                value,
            } => {
                let cast = column_cast(entity, column);
                let text = value.to_sql_text();
                match test {
                    Test::EqualsAnyCase => format!("lower(t.{column}) = lower({})", sql.bind(text)),
                    Test::Equals => format!("t.{column} = {}{cast}", sql.bind(text)),
                    Test::AtLeast => format!("t.{column} >= {}{cast}", sql.bind(text)),
                    Test::AtMost => format!("t.{column} <= {}{cast}", sql.bind(text)),
                    Test::Before => format!("t.{column} < {}{cast}", sql.bind(text)),
                    Test::Unset => unreachable!("Unset is its own condition"),
                }
            }
            Self::Unset { column, unset } => {
                format!("t.{column} IS {}NULL", if *unset { "" } else { "NOT " })
            }
            Self::Search { search, text } => search_sql(*search, text, sql),
            Self::CustomFieldsContain(wanted) => {
                format!(
                    "t.custom_fields @> {}::text::jsonb",
                    sql.bind(wanted.to_string())
                )
            }
        }
    }

    /// The relevance of a row, a `float8` expression, for a ranking search.
    fn rank(&self, sql: &mut Sql) -> Option<String> {
        match self {
            Self::Search {
                search: Search::Person,
                text,
            } => Some(PersonSearch::new(text).rank(sql)),
            _ => None,
        }
    }
}

/// A page of records with each row's sort value (for the next cursor),
/// each record read as `T` (see [`Record`]).
pub async fn list<T: Record>(
    tx: &TenantTx,
    entity: &Entity,
    query: &ListQuery,
) -> Result<Vec<(T, String, i32)>, StoreError> {
    let (text, sql) = list_sql(entity, query);
    let rows = run(tx, query, &text, &sql).await?;
    let ranked = query.ranking().is_some();
    Ok(rows
        .iter()
        .map(|r| {
            // Rust writes the shortest text that reads back as the same
            // float8, as PostgreSQL does: a cursor resumes exactly there.
            let key = if ranked {
                r.get::<_, f64>(1).to_string()
            } else {
                r.get(1)
            };
            (r.get(0), key, r.get(2))
        })
        .collect())
}

/// The plan PostgreSQL chooses for [`list`]'s query, with the same
/// parameters: for tests that every search runs on an index.
#[cfg(feature = "testing")]
pub async fn list_plan(
    tx: &TenantTx,
    entity: &Entity,
    query: &ListQuery,
) -> Result<String, StoreError> {
    let (text, sql) = list_sql(entity, query);
    let rows = run(tx, query, &format!("EXPLAIN {text}"), &sql).await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Runs a list's statement `text` as the query needs: planned for its
/// values when it searches, else prepared once per session.
async fn run(
    tx: &TenantTx,
    query: &ListQuery,
    text: &str,
    sql: &Sql,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let params = sql.params();
    if query.searches() {
        tx.query_planned_for_values(text, &params).await
    } else {
        tx.query(text, &params).await
    }
}

fn list_sql(entity: &Entity, query: &ListQuery) -> (String, Sql) {
    let mut sql = Sql::default();
    let mut wheres = vec![if query.include_deleted {
        "true".to_owned()
    } else {
        "t.deleted_at IS NULL".to_owned()
    }];
    for condition in &query.conditions {
        wheres.push(condition.sql(entity, &mut sql));
    }
    let ranking = query.ranking();
    let sort = query.sort;
    let (op, dir) = if sort.descending || ranking.is_some() {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // The ordering expression, and its type as the cursor's text is read
    // back.
    let (key, key_cast) = match ranking.and_then(|r| r.rank(&mut sql)) {
        Some(rank) => (format!("({rank})::float8"), "::text::float8"),
        None => (
            format!("t.{}", sort.column),
            column_cast(entity, sort.column),
        ),
    };
    if let Some((value, id)) = &query.after {
        let (value, id) = (sql.bind(value.clone()), sql.bind(id.to_string()));
        wheres.push(format!(
            "({key}, t.id) {op} ({value}{key_cast}, {id}::text::int)"
        ));
    }
    // A rank is selected as it is and ordered by its column: PostgreSQL
    // computes it once per row (it compares the name with every typo
    // variant) and parses it once. A column is selected as text.
    let (selected, order_by) = if ranking.is_some() {
        (key.clone(), "2".to_owned())
    } else {
        (format!("({key})::text"), key.clone())
    };
    let limit = sql.bind(query.limit.to_string());
    let text = format!(
        "SELECT {json}, {selected}, t.id FROM {table} t WHERE {wheres}
         ORDER BY {order_by} {dir}, t.id {dir} LIMIT {limit}::text::bigint",
        json = record_json(entity),
        table = entity.table,
        wheres = wheres.join(" AND "),
    );
    (text, sql)
}

/// What a search matches.
fn search_sql(search: Search, text: &str, sql: &mut Sql) -> String {
    match search {
        Search::Prefix(columns) => {
            let prefix = like_prefix(text.trim());
            let any: Vec<String> = columns
                .iter()
                .map(|c| format!("lower(t.{c}) LIKE {}", sql.bind(prefix.clone())))
                .collect();
            format!("({})", any.join(" OR "))
        }
        Search::Contains(column) => {
            let contains = format!("%{}", like_prefix(text.trim()));
            format!("lower(t.{column}) LIKE {}", sql.bind(contains))
        }
        Search::Person => PersonSearch::new(text).matches(sql),
    }
}

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A prefix query for the contact search vector: each word a prefix,
/// all words required. Words keep letters, digits and the characters of
/// email addresses; anything that means something to `to_tsquery` is
/// dropped, and each word is quoted.
fn prefix_tsquery(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || "@.-_+".contains(*c))
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .map(|w| format!("'{w}':*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// People search: full-text words as prefixes (`jo` finds John), the
/// email, and word similarity for typos (`jhon`, `jhon smith`); best
/// first. Word similarity (`%>`) compares the query with the best-matching
/// stretch of the name, so one misspelt word is enough; trigrams forgive a
/// wrong or missing letter but hardly two letters swapped in a short word
/// (`jhon` and `john` share one trigram of five), so the query also runs
/// with each pair of neighbouring letters swapped. Every path is on the
/// name's and the email's trigram indexes or the search vector's.
struct PersonSearch {
    /// The query, lower-case, single-spaced.
    q: String,
    tsquery: Option<String>,
    /// The query and its typo variants.
    variants: Vec<String>,
}

const PERSON_NAME: &str = "lower(t.first_name || ' ' || t.last_name)";

impl PersonSearch {
    fn new(text: &str) -> Self {
        let q = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        Self {
            tsquery: prefix_tsquery(&q),
            variants: typo_variants(&q),
            q,
        }
    }

    fn matches(&self, sql: &mut Sql) -> String {
        let words = match &self.tsquery {
            Some(tsquery) => format!(
                "t.search_vector @@ to_tsquery('simple', {}) OR ",
                sql.bind(tsquery.clone())
            ),
            None => String::new(),
        };
        // One `%>` per variant, not `%> ANY(array)`: each is a scan of the
        // name's trigram index, where an array would read the whole table.
        let names: Vec<String> = self
            .variants
            .iter()
            .map(|v| format!("{PERSON_NAME} %> {}", sql.bind(v.clone())))
            .collect();
        format!(
            "({words}{} OR lower(t.email) % {})",
            names.join(" OR "),
            sql.bind(self.q.clone()),
        )
    }

    /// How well a row matches, higher first.
    fn rank(&self, sql: &mut Sql) -> String {
        // The best of the variants' word similarities.
        let name_similarity = |sql: &mut Sql| {
            let each: Vec<String> = self
                .variants
                .iter()
                .map(|v| format!("word_similarity({}, {PERSON_NAME})", sql.bind(v.clone())))
                .collect();
            format!("GREATEST({})", each.join(", "))
        };
        match &self.tsquery {
            Some(tsquery) => format!(
                "ts_rank(t.search_vector, to_tsquery('simple', {})) + {} \
                 + similarity(lower(coalesce(t.email, '')), {})",
                sql.bind(tsquery.clone()),
                name_similarity(sql),
                sql.bind(self.q.clone()),
            ),
            None => name_similarity(sql),
        }
    }
}

/// The query, then the query with each pair of neighbouring letters
/// swapped (`jhon` gives `hjon`, `john`, `jhno`). Long queries are taken
/// as they are: the swaps grow with their length, and long words keep
/// enough trigrams to forgive a swap on their own.
fn typo_variants(q: &str) -> Vec<String> {
    const MAX_SWAPPED_LEN: usize = 40;
    let mut variants = vec![q.to_owned()];
    let chars: Vec<char> = q.chars().collect();
    if chars.len() > MAX_SWAPPED_LEN {
        return variants;
    }
    for i in 1..chars.len() {
        let (a, b) = (chars[i - 1], chars[i]);
        if a != b && a.is_alphanumeric() && b.is_alphanumeric() {
            let mut swapped = chars.clone();
            swapped.swap(i - 1, i);
            let swapped: String = swapped.into_iter().collect();
            if !variants.contains(&swapped) {
                variants.push(swapped);
            }
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_variants_swap_each_pair_of_neighbouring_letters_once() {
        assert_eq!(typo_variants("jhon"), ["jhon", "hjon", "john", "jhno"]);
        assert_eq!(typo_variants("aab"), ["aab", "aba"]);
        assert_eq!(typo_variants("a b"), ["a b"], "not across words");
        assert_eq!(typo_variants(&"x".repeat(41)).len(), 1);
    }

    #[test]
    fn search_words_become_quoted_prefixes() {
        assert_eq!(
            prefix_tsquery("John  Smith").as_deref(),
            Some("'john':* & 'smith':*")
        );
        assert_eq!(
            prefix_tsquery("john@x.com").as_deref(),
            Some("'john@x.com':*")
        );
        assert_eq!(
            prefix_tsquery("o'brien & (x) | !y:*").as_deref(),
            Some("'obrien':* & 'x':* & 'y':*")
        );
        assert_eq!(prefix_tsquery("&& ||"), None);
    }

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_prefix("50%_Off\\"), "50\\%\\_off\\\\%");
    }
}
