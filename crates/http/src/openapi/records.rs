//! The record types in the document, made from their definitions: a
//! schema for a record as answered, for a create body and for a change
//! body; and the five operations of each collection with the list's
//! sorts, filters and search.

use serde_json::{Map, Value, json};

use atrium_domain::records::{Search, Test};
use atrium_services::records::{ENTITIES, Entity, Field, Kind};

/// Puts each record type's schemas in the document.
pub(super) fn add_schemas(schemas: &mut Map<String, Value>) {
    for entity in ENTITIES {
        let name = entity.schema;
        schemas.insert(name.to_owned(), record_schema(entity));
        schemas.insert(format!("{name}Input"), input_schema(entity, true));
        schemas.insert(format!("{name}Changes"), input_schema(entity, false));
    }
}

/// Puts each record type's routes in the document, as `records.rs`
/// serves them.
pub(super) fn add_paths(paths: &mut Map<String, Value>) {
    for entity in ENTITIES {
        let collection = format!("/api/v1/{}", entity.table);
        paths.insert(
            collection.clone(),
            json!({"get": list_operation(entity), "post": create_operation(entity)}),
        );
        paths.insert(
            format!("{collection}/{{id}}"),
            json!({
                "get": get_operation(entity),
                "patch": change_operation(entity),
                "delete": delete_operation(entity),
            }),
        );
        paths.insert(
            format!("{collection}/{{id}}/restore"),
            json!({"post": restore_operation(entity)}),
        );
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// An operation of a record type: its tag, the session it needs, and its
/// own answers (the ones every operation can give are added later).
fn operation(entity: &Entity, id: String, summary: String, responses: Value) -> Value {
    json!({
        "tags": [entity.table],
        "operationId": id,
        "summary": summary,
        "security": [{"session": []}],
        "parameters": [],
        "responses": responses,
    })
}

fn record_answer(entity: &Entity, description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"ETag": {"description": "The record's version, for `If-Match`.", "schema": {"type": "string"}}},
        "content": json_content(schema_ref(entity.schema)),
    })
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": schema_ref("Problem")}}})
}

fn param(name: &str, location: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": schema, "description": description})
}

fn id_param() -> Value {
    param(
        "id",
        "path",
        true,
        json!({"type": "integer", "format": "int32", "minimum": 1}),
        "The record's id.",
    )
}

fn list_operation(entity: &Entity) -> Value {
    let page = json!({
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": schema_ref(entity.schema)},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["data"],
    });
    let mut op = operation(
        entity,
        format!("list_{}", entity.table),
        format!(
            "{}, newest first unless `sort` says otherwise",
            capitalised(entity.table)
        ),
        json!({
            "200": {"description": "A page of records.", "content": json_content(page)},
            "403": problem("`forbidden`: only managers and admins see deleted records."),
        }),
    );
    let mut params = Vec::new();
    if let Some(search) = entity.search {
        let what = match search {
            Search::Prefix(columns) => format!("Records whose {} starts with this text, any case.", columns.join(" or ")),
            Search::Contains(column) => format!("Records whose {column} contains this text, any case."),
            Search::Person => "Names and email: whole words, prefixes while typing (`jo`), small typos (`jhon smith`); best matches first, whatever `sort` says.".to_owned(),
        };
        params.push(param("q", "query", false, json!({"type": "string"}), &what));
    }
    for filter in entity.filters {
        let field = entity.field(filter.column).expect("filters name fields");
        let (schema, what) = match filter.test {
            Test::Unset => (
                json!({"type": "boolean"}),
                format!(
                    "`true`: only records without `{}`; `false`: only those with it.",
                    filter.column
                ),
            ),
            test => {
                let how = match test {
                    Test::Equals => "equals",
                    Test::EqualsAnyCase => "equals, ignoring case,",
                    Test::AtLeast => "is on or after",
                    Test::AtMost => "is on or before",
                    Test::Before => "is before",
                    Test::Unset => unreachable!(),
                };
                (
                    filter_schema(field),
                    format!("Only records whose `{}` {how} this.", filter.column),
                )
            }
        };
        params.push(param(filter.param, "query", false, schema, &what));
    }
    let sorts: Vec<&str> = entity.sorts.iter().map(|s| s.name).collect();
    params.push(param(
        "sort",
        "query",
        false,
        json!({"type": "string", "enum": sorts, "default": sorts[0]}),
        "The order; `-` first is descending.",
    ));
    params.push(param(
        "limit",
        "query",
        false,
        json!({"type": "integer"}),
        "Records per page.",
    ));
    params.push(param(
        "cursor",
        "query",
        false,
        json!({"type": "string"}),
        "`next_cursor` of the previous page.",
    ));
    params.push(param(
        "include_deleted",
        "query",
        false,
        json!({"type": "boolean"}),
        "Deleted records too (managers and admins).",
    ));
    op["description"] =
        json!("Custom fields filter as `cf.<key>=<value>`, checked against their definitions.");
    op["parameters"] = Value::Array(params);
    op
}

/// A filter's parameter as the field's kind reads it.
fn filter_schema(field: &Field) -> Value {
    match field.kind {
        Kind::Ref(_) | Kind::UserRef | Kind::Int { .. } => {
            json!({"type": "integer", "format": "int32", "minimum": 1})
        }
        Kind::Date => json!({"type": "string", "format": "date"}),
        Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
        Kind::Choice(options) => json!({"type": "string", "enum": options}),
        _ => json!({"type": "string"}),
    }
}

fn body(name: String) -> Value {
    json!({"required": true, "content": json_content(schema_ref(&name))})
}

fn create_operation(entity: &Entity) -> Value {
    let mut op = operation(
        entity,
        format!("create_{}", entity.name),
        format!("Create a {}", entity.name),
        json!({
            "201": record_answer(entity, "Created."),
            "403": problem("`forbidden`: viewers create nothing."),
        }),
    );
    op["requestBody"] = body(format!("{}Input", entity.schema));
    op
}

fn get_operation(entity: &Entity) -> Value {
    let mut op = operation(
        entity,
        format!("get_{}", entity.name),
        format!("One {}", entity.name),
        json!({
            "200": record_answer(entity, "The record."),
            "403": problem("`forbidden`: only managers and admins see deleted records."),
        }),
    );
    op["parameters"] = json!([
        id_param(),
        param(
            "include_deleted",
            "query",
            false,
            json!({"type": "boolean"}),
            "A deleted record too (managers and admins)."
        ),
    ]);
    op
}

fn change_operation(entity: &Entity) -> Value {
    let mut op = operation(
        entity,
        format!("update_{}", entity.name),
        format!("Change a {}", entity.name),
        json!({
            "200": record_answer(entity, "Changed."),
            "403": problem("`forbidden`: the user may not change this record."),
            "412": problem("`precondition_failed`: `If-Match` names another version."),
        }),
    );
    op["description"] = json!(
        "`custom_fields` merges (a key set to null is removed). `If-Match` with a stale ETag is 412."
    );
    op["parameters"] = json!([
        id_param(),
        param(
            "If-Match",
            "header",
            false,
            json!({"type": "string"}),
            "The ETag the change was made against."
        ),
    ]);
    op["requestBody"] = body(format!("{}Changes", entity.schema));
    op
}

fn delete_operation(entity: &Entity) -> Value {
    let mut op = operation(
        entity,
        format!("delete_{}", entity.name),
        format!("Soft-delete a {}", entity.name),
        json!({
            "204": {"description": "Deleted; managers and admins can restore it."},
            "403": problem("`forbidden`: the user may not change this record."),
        }),
    );
    op["parameters"] = json!([id_param()]);
    op
}

fn restore_operation(entity: &Entity) -> Value {
    let mut op = operation(
        entity,
        format!("restore_{}", entity.name),
        format!("Restore a deleted {} (managers and admins)", entity.name),
        json!({
            "200": record_answer(entity, "Restored."),
            "403": problem("`forbidden`: only managers and admins restore."),
            "409": problem("`conflict`: the record is not deleted."),
        }),
    );
    op["parameters"] = json!([id_param()]);
    op
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A record as the server answers it: its fields, then id and audit.
fn record_schema(entity: &Entity) -> Value {
    let mut properties = Map::new();
    properties.insert("id".into(), json!({"type": "integer", "minimum": 1}));
    for field in entity.fields {
        properties.insert(field.name.into(), field_schema(field, Side::Answer));
    }
    properties.insert("created_by".into(), json!({"type": "integer"}));
    properties.insert("updated_by".into(), json!({"type": ["integer", "null"]}));
    for stamp in ["created_at", "updated_at"] {
        properties.insert(
            stamp.into(),
            json!({"type": "string", "format": "date-time"}),
        );
    }
    properties.insert(
        "deleted_at".into(),
        json!({"type": ["string", "null"], "format": "date-time"}),
    );
    let required: Vec<&str> = properties.keys().map(String::as_str).collect();
    json!({
        "type": "object",
        "description": format!("A {} as stored. Audit fields are read-only; a single record's answer carries an `ETag`.", entity.name),
        "properties": properties,
        "required": required,
    })
}

/// A create (`required`) or change body: only the record's own fields,
/// nothing else (unknown fields are 422).
fn input_schema(entity: &Entity, create: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in entity.fields {
        properties.insert(field.name.into(), field_schema(field, Side::Request));
        if create && field.required {
            required.push(field.name);
        }
    }
    let what = if create {
        "Creates a record; fields left out take their defaults."
    } else {
        "Changes the fields given; `null` clears an optional field. `custom_fields` merges keys (a key set to `null` is removed)."
    };
    json!({
        "type": "object",
        "description": what,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Request,
    Answer,
}

fn field_schema(field: &Field, side: Side) -> Value {
    let decimal = |digits: usize| {
        let pattern = format!("^\\d{{1,{digits}}}(\\.\\d{{1,2}})?$");
        match side {
            Side::Answer => {
                json!({"type": "string", "pattern": format!("^\\d{{1,{digits}}}\\.\\d{{2}}$")})
            }
            Side::Request => json!({"oneOf": [
                {"type": "string", "pattern": pattern},
                {"type": "number", "minimum": 0},
            ]}),
        }
    };
    let mut schema = match field.kind {
        Kind::Text { max } => json!({"type": "string", "maxLength": max}),
        Kind::Stage => json!({
            "type": "string", "maxLength": atrium_domain::records::STAGE_NAME_MAX,
            "description": "The name of one of the organisation's pipeline stages.",
            "examples": ["lead"],
        }),
        Kind::Email => json!({"type": "string", "format": "email", "maxLength": 254}),
        Kind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Money { int_digits } => decimal(int_digits),
        Kind::Currency => {
            json!({"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"})
        }
        Kind::Ref(target) => json!({
            "type": "integer", "minimum": 1,
            "description": format!("The id of a {} of this organisation that is not deleted.", target.entity().name),
        }),
        Kind::UserRef => json!({
            "type": "integer", "minimum": 1,
            "description": "The id of an active user of this organisation.",
        }),
        Kind::Date => json!({"type": "string", "format": "date"}),
        Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
        Kind::Percent => match side {
            Side::Answer => {
                json!({"type": "string", "pattern": "^\\d{1,3}\\.\\d{2}$", "description": "0.00 to 100.00"})
            }
            Side::Request => json!({"oneOf": [
                {"type": "string", "pattern": "^\\d{1,3}(\\.\\d{1,2})?$"},
                {"type": "number", "minimum": 0, "maximum": 100},
            ], "description": "0 to 100"}),
        },
        Kind::Choice(options) => json!({"type": "string", "enum": options}),
        Kind::CustomFields => json!({
            "type": "object",
            "description": "Values of the organisation's custom fields for this record type, by key, checked against their definitions.",
        }),
    };
    if field.required && side == Side::Request {
        schema["minLength"] = json!(1);
    }
    let nullable = match side {
        Side::Request => !field.required,
        Side::Answer => !field.required && field.default.is_none(),
    };
    if nullable {
        schema = match schema.get("type").cloned() {
            Some(Value::String(t)) => {
                schema["type"] = json!([t, "null"]);
                schema
            }
            _ => json!({"anyOf": [schema, {"type": "null"}]}),
        };
    }
    schema
}
