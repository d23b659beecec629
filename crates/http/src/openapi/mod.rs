//! The OpenAPI document, made to say exactly what the server does.
//!
//! The routes' annotations give each operation its own answers; here the
//! rest is added in one place, from the same sources as the code:
//! - the record types' schemas and routes (companies, contacts, deals,
//!   activities) are made from their definitions, the same ones that
//!   check request bodies and build the SQL, so the document cannot drift
//!   from the rules (`records.rs`);
//! - the answers every operation of a kind can give (a tenant that does
//!   not exist or is suspended, a missing session, a body too large, the
//!   anonymous allowance, a server at capacity) with their problem
//!   documents and `Retry-After`;
//! - the rules of the parameters every list shares (`limit`, `cursor`,
//!   `sort`, `include_deleted`) and of path ids.

use serde_json::{Value, json};

mod records;

use crate::list::MAX_LIMIT;

const PROBLEM: &str = "application/problem+json";

/// Completes the document the routes produced.
pub(crate) fn complete(mut doc: Value) -> Value {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has schemas");
    records::add_schemas(schemas);
    for (schema, property, rule) in body_rules() {
        if let Some(target) = schemas
            .get_mut(schema)
            .and_then(|s| s["properties"].get_mut(property))
        {
            let nullable =
                matches!(&target["type"], Value::Array(types) if types.contains(&json!("null")));
            let mut rule = rule;
            if nullable && let Some(t) = rule.get("type").cloned() {
                rule["type"] = json!([t, "null"]);
            }
            *target = rule;
        }
    }
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    records::add_paths(paths);
    for (path, operations) in paths.iter_mut() {
        for operation in operations
            .as_object_mut()
            .into_iter()
            .flatten()
            .map(|(_, o)| o)
        {
            complete_operation(path, operation);
        }
    }
    doc
}

/// What the services check of the other bodies' fields (the domain's
/// rules: passwords, subdomains, names, roles, tiers), as schema rules.
fn body_rules() -> Vec<(&'static str, &'static str, Value)> {
    use atrium_domain::Password;
    let password = json!({
        "type": "string", "minLength": Password::MIN_BYTES, "maxLength": Password::MAX_BYTES,
        "description": format!("{} to {} bytes of UTF-8", Password::MIN_BYTES, Password::MAX_BYTES),
    });
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let person_name = json!({"type": "string", "minLength": 1, "maxLength": 100});
    let subdomain = json!({
        "type": "string", "minLength": 3, "maxLength": 63,
        "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$",
        "description": "Letters a-z (any case; stored in lower case), digits and inner hyphens; not a reserved name such as www, api or admin.",
        "examples": ["acme"],
    });
    let tenant_name = json!({"type": "string", "minLength": 1, "maxLength": 255});
    let tier = json!({"type": "string", "enum": ["small", "medium", "large"]});
    let role = json!({"type": "string", "enum": ["admin", "manager", "sales_rep", "viewer"]});
    let token = json!({"type": "string", "minLength": 1});
    let probability = json!({"oneOf": [
        {"type": "string", "pattern": "^\\d{1,3}(\\.\\d{1,2})?$"},
        {"type": "number", "minimum": 0, "maximum": 100},
    ]});
    vec![
        ("NewTenantBody", "name", tenant_name.clone()),
        ("NewTenantBody", "subdomain", subdomain.clone()),
        ("NewTenantBody", "tier", tier.clone()),
        ("NewAdminBody", "email", email.clone()),
        ("NewAdminBody", "first_name", person_name.clone()),
        ("NewAdminBody", "last_name", person_name.clone()),
        ("NewAdminBody", "password", password.clone()),
        ("TenantChangesBody", "name", tenant_name),
        ("TenantChangesBody", "subdomain", subdomain),
        ("TenantChangesBody", "tier", tier),
        (
            "TenantChangesBody",
            "status",
            json!({"type": "string", "enum": ["active", "suspended"]}),
        ),
        (
            "LoginBody",
            "email",
            json!({"type": "string", "minLength": 1}),
        ),
        (
            "LoginBody",
            "password",
            json!({"type": "string", "minLength": 1}),
        ),
        (
            "PasswordChangeBody",
            "current_password",
            json!({
                "type": "string", "minLength": 1,
                "description": "The user's password now; a wrong one is 422 naming this field.",
            }),
        ),
        ("PasswordChangeBody", "new_password", password.clone()),
        (
            "ResetRequestBody",
            "email",
            json!({"type": "string", "minLength": 1}),
        ),
        (
            "ResetConfirmBody",
            "token",
            json!({
                "type": "string", "minLength": 1,
                "description": "The token from the reset email; an unknown, used or expired one is 422 naming this field.",
            }),
        ),
        ("ResetConfirmBody", "new_password", password.clone()),
        ("InvitationBody", "email", email),
        ("InvitationBody", "role", role.clone()),
        ("AcceptBody", "token", token),
        ("AcceptBody", "first_name", person_name.clone()),
        ("AcceptBody", "last_name", person_name.clone()),
        ("AcceptBody", "password", password),
        ("UserChangesBody", "first_name", person_name.clone()),
        ("UserChangesBody", "last_name", person_name),
        ("UserChangesBody", "role", role),
        (
            "NewFieldBody",
            "entity",
            json!({"type": "string", "enum": ["contact", "company", "deal"]}),
        ),
        (
            "NewFieldBody",
            "type",
            json!({"type": "string", "enum": ["text", "number", "boolean", "date", "select", "multiselect"]}),
        ),
        (
            "NewFieldBody",
            "key",
            json!({
                "type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$",
                "description": "Lower-case letters, digits and underscores, starting with a letter; unique per entity.",
                "examples": ["priority"],
            }),
        ),
        (
            "NewFieldBody",
            "label",
            json!({"type": "string", "minLength": 1, "maxLength": 100}),
        ),
        (
            "NewStageBody",
            "name",
            json!({"type": "string", "minLength": 1, "maxLength": 50, "pattern": "^[^/]*$", "examples": ["discovery"]}),
        ),
        ("NewStageBody", "probability", probability.clone()),
        (
            "NewStageBody",
            "kind",
            json!({"type": "string", "enum": ["open", "won", "lost"]}),
        ),
        (
            "NewStageBody",
            "position",
            json!({"type": "integer", "minimum": 1}),
        ),
        (
            "StageChangesBody",
            "name",
            json!({"type": "string", "minLength": 1, "maxLength": 50}),
        ),
        ("StageChangesBody", "probability", probability),
        (
            "StageChangesBody",
            "kind",
            json!({"type": "string", "enum": ["open", "won", "lost"]}),
        ),
        (
            "StageChangesBody",
            "position",
            json!({"type": "integer", "minimum": 1}),
        ),
        (
            "DealContactBody",
            "role",
            json!({"type": ["string", "null"], "maxLength": 50}),
        ),
    ]
}

fn complete_operation(path: &str, operation: &mut Value) {
    let tenant = path.starts_with("/api/v1/");
    let signed_in = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let params: Vec<Value> = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let in_path = params.iter().any(|p| p["in"] == "path");
    let in_query = params.iter().any(|p| p["in"] == "query");

    set_param(
        operation,
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": crate::list::DEFAULT_LIMIT}),
    );
    set_param(
        operation,
        "cursor",
        json!({"type": "string", "description": "`next_cursor` of the previous page"}),
    );
    for flag in ["include_deleted", "dry_run", "open"] {
        set_param(
            operation,
            flag,
            json!({"type": "boolean", "default": false}),
        );
    }
    set_param(
        operation,
        "id",
        json!({"type": "integer", "format": "int32", "minimum": 1}),
    );
    set_param(
        operation,
        "contact_id",
        json!({"type": "integer", "format": "int32", "minimum": 1}),
    );
    if path == "/api/v1/pipeline/summary" {
        for date in ["expected_close_from", "expected_close_to"] {
            set_param(operation, date, json!({"type": "string", "format": "date"}));
        }
    }
    if path == "/api/v1/audit" {
        set_param(
            operation,
            "entity",
            json!({"type": "string", "enum": ["company", "contact", "deal", "activity"]}),
        );
        set_param(
            operation,
            "entity_id",
            json!({"type": "integer", "minimum": 1}),
        );
    }
    if path == "/api/v1/custom-fields" {
        set_param(
            operation,
            "entity",
            json!({"type": "string", "enum": ["contact", "company", "deal"]}),
        );
    }

    let responses = operation["responses"]
        .as_object_mut()
        .expect("every operation answers");
    // Problems are problem+json, whatever the annotation said.
    for response in responses.values_mut() {
        if let Some(content) = response["content"].as_object_mut()
            && let Some(json) = content.remove("application/json")
        {
            if json["schema"]["$ref"] == "#/components/schemas/Problem" {
                content.insert(PROBLEM.into(), json);
            } else {
                content.insert("application/json".into(), json);
            }
        }
    }
    let mut add = |status: &str, description: &str| {
        let response = responses
            .entry(status)
            .or_insert_with(|| json!({"description": description}));
        response["content"] =
            json!({PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}});
        if status == "429" || status == "503" {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }});
        }
    };
    add(
        "500",
        "`internal`: something went wrong on the server; the request id names it in the logs.",
    );
    add(
        "503",
        "`unavailable`: the database or the server is busy or down, or the organisation is over its database-time budget; retry after `Retry-After` seconds.",
    );
    if has_body || in_query {
        add(
            "400",
            "`bad_request`: the body or the query string cannot be read.",
        );
    }
    if has_body {
        add(
            "413",
            "`payload_too_large`: the body is over 1 MiB (a CSV import: 20 MiB or 100,000 rows).",
        );
    }
    if has_body || in_query {
        add(
            "422",
            "`validation_failed`: a field or parameter is refused; `errors` names each.",
        );
    }
    if tenant {
        add(
            "404",
            "`tenant_not_found`: no organisation answers on this host; or `not_found`.",
        );
        add(
            "403",
            "`tenant_suspended`: the organisation is suspended; or `forbidden`.",
        );
        add(
            "429",
            "`rate_limited`: too many requests (or attempts) for now.",
        );
    } else if in_path {
        add("404", "`not_found`.");
    }
    if signed_in {
        add("401", "`unauthorized`: no valid token.");
    }
    if !tenant {
        // Without a configured platform token the platform API is 404.
        add(
            "404",
            "`not_found`: the platform API is disabled, or the tenant does not exist.",
        );
    }
}

/// Sets the schema of parameter `name` wherever the operation has one.
fn set_param(operation: &mut Value, name: &str, schema: Value) {
    for param in operation["parameters"].as_array_mut().into_iter().flatten() {
        if param["name"] == name {
            param["schema"] = schema.clone();
        }
    }
}
