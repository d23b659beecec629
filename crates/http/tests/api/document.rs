//! The OpenAPI document says what the server does: for every operation, a
//! request made only from the document's schemas is not refused as
//! invalid, and every answer's status and content type are documented.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, send};

/// Resolves a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The least value the schema allows: its example, its first choice, or
/// the shortest value of its type and format.
fn example(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(first) = schema["examples"].get(0) {
        return first.clone();
    }
    if let Some(first) = schema["enum"].get(0) {
        return first.clone();
    }
    for any in ["oneOf", "anyOf"] {
        if let Some(first) = schema[any].get(0) {
            return example(doc, first);
        }
    }
    let kind = match &schema["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").cloned(),
        other => Some(other.clone()),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("object") => {
            let mut object = Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                object.insert(name.into(), example(doc, &schema["properties"][name]));
            }
            Value::Object(object)
        }
        Some("array") => json!([]),
        Some("integer") => json!(schema["minimum"].as_i64().unwrap_or(1).max(1)),
        Some("number") => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        Some("boolean") => json!(false),
        _ => match schema["format"].as_str() {
            Some("email") => json!("walker@example.com"),
            Some("date") => json!("2026-06-30"),
            Some("date-time") => json!("2026-06-30T12:00:00Z"),
            _ => {
                let length = schema["minLength"].as_u64().unwrap_or(1).max(1) as usize;
                json!("w".repeat(length))
            }
        },
    }
}

#[tokio::test]
async fn a_request_made_from_the_document_is_never_refused_as_invalid_and_every_answer_is_documented()
 {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let spare = app.create_tenant("beta").await;
    let post = |path: &str, body: Value| {
        send(
            app.authed(Method::POST, "alpha", &t.admin_token, path)
                .json(&body),
            StatusCode::CREATED,
        )
    };
    let (user_id, _) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let ids = [
        (
            "companies",
            post("/api/v1/companies", json!({"name": "Initech"})).await["id"].clone(),
        ),
        (
            "contacts",
            post(
                "/api/v1/contacts",
                json!({"first_name": "Ann", "last_name": "Lee"}),
            )
            .await["id"]
                .clone(),
        ),
        (
            "deals",
            post("/api/v1/deals", json!({"title": "Big", "stage": "lead"})).await["id"].clone(),
        ),
        (
            "activities",
            post(
                "/api/v1/activities",
                json!({"kind": "call", "subject": "Hi"}),
            )
            .await["id"]
                .clone(),
        ),
        (
            "invitations",
            post(
                "/api/v1/invitations",
                json!({"email": "x@alpha.example", "role": "viewer"}),
            )
            .await["id"]
                .clone(),
        ),
        (
            "custom-fields",
            post(
                "/api/v1/custom-fields",
                json!({"entity": "deal", "key": "region", "label": "Region", "type": "text"}),
            )
            .await["id"]
                .clone(),
        ),
        ("users", json!(user_id)),
        ("tenants", json!(spare.id)),
    ];
    let contact = ids[1].1.clone();

    let doc = send(
        app.request(Method::GET, "/api/openapi.json"),
        StatusCode::OK,
    )
    .await;
    let mut operations = Vec::new();
    for (template, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            operations.push((template.clone(), method.clone(), operation.clone()));
        }
    }
    // Deletions last, so the records the others need are still there.
    operations.sort_by_key(|(_, method, _)| method == "delete");
    assert!(operations.len() >= 60, "{} operations", operations.len());

    for (template, method, operation) in operations {
        let mut path = template.clone();
        for (collection, id) in &ids {
            if path.contains(&format!("/{collection}/{{id}}")) {
                path = path.replace("{id}", &id.to_string());
            }
        }
        path = path
            .replace("{contact_id}", &contact.to_string())
            .replace("{name}", "proposal");
        assert!(!path.contains('{'), "no fixture for {template}");
        let mut query = Vec::new();
        for param in operation["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "query" && param["required"] == true {
                let value = match example(&doc, &param["schema"]) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                query.push((param["name"].as_str().unwrap().to_owned(), value));
            }
        }
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = if template.starts_with("/platform/") {
            app.platform(method.clone(), &path)
        } else if operation.get("security").is_some() {
            app.authed(method.clone(), "alpha", &t.admin_token, &path)
        } else {
            app.tenant_request(method.clone(), "alpha", &path)
        }
        .query(&query);
        let content = &operation["requestBody"]["content"];
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            request = request.json(&example(&doc, schema));
        } else if content.get("text/csv").is_some() {
            request = request
                .header(CONTENT_TYPE, "text/csv")
                .body("first_name,last_name\nWalker,Doc\n");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = response.text().await.unwrap();
        let what = format!("{method} {template} ({path}) answered {status}: {body}");
        let documented = &operation["responses"][status.as_str()];
        assert!(documented.is_object(), "undocumented status: {what}");
        if let Some(content_type) = content_type.filter(|_| !body.is_empty()) {
            assert!(
                documented["content"].get(&content_type).is_some(),
                "undocumented content type {content_type}: {what}"
            );
        }
        assert_ne!(status, StatusCode::BAD_REQUEST, "{what}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            // Only what no schema can say: a token or a password that is
            // well formed but not the right one, or a cluster this server
            // does not know.
            let problem: Value = serde_json::from_str(&body).unwrap();
            let field = problem["errors"][0]["field"].as_str().unwrap_or_default();
            assert!(
                matches!(
                    (template.as_str(), field),
                    ("/api/v1/auth/password-reset/confirm", "token")
                        | ("/api/v1/me/password", "current_password")
                        | ("/platform/v1/tenants/{id}/move", "to")
                ),
                "a request valid by the document was refused: {what}"
            );
        }
    }
}

/// The record schemas, bodies and list parameters are the definitions':
/// a field added to a definition shows up here, or this fails.
#[tokio::test]
async fn the_document_describes_each_record_type_as_its_definition_does() {
    use atrium_services::records::ENTITIES;
    use std::collections::BTreeSet;

    let app = TestApp::spawn().await;
    let doc = send(
        app.request(Method::GET, "/api/openapi.json"),
        StatusCode::OK,
    )
    .await;
    let keys = |schema: &Value| -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let strings = |value: &Value| -> BTreeSet<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for entity in ENTITIES {
        let fields: BTreeSet<String> = entity.fields.iter().map(|f| f.name.to_owned()).collect();
        let required: BTreeSet<String> = entity
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.to_owned())
            .collect();
        let schemas = &doc["components"]["schemas"];
        let answer = keys(&schemas[entity.schema]);
        let audit = [
            "id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
            "deleted_at",
        ];
        assert_eq!(
            answer,
            fields
                .iter()
                .cloned()
                .chain(audit.map(String::from))
                .collect(),
            "{}",
            entity.schema
        );
        let input = &schemas[format!("{}Input", entity.schema)];
        assert_eq!(keys(input), fields, "{} input", entity.schema);
        assert_eq!(
            strings(&input["required"]),
            required,
            "{} input",
            entity.schema
        );
        assert_eq!(keys(&schemas[format!("{}Changes", entity.schema)]), fields);

        let collection = format!("/api/v1/{}", entity.table);
        let list = &doc["paths"][&collection]["get"];
        let params: Vec<&Value> = list["parameters"].as_array().unwrap().iter().collect();
        let param = |name: &str| params.iter().find(|p| p["name"] == name).copied();
        for filter in entity.filters {
            assert!(
                param(filter.param).is_some(),
                "{collection} ?{}",
                filter.param
            );
        }
        assert_eq!(
            param("q").is_some(),
            entity.search.is_some(),
            "{collection} ?q"
        );
        let sorts: Vec<&str> = entity.sorts.iter().map(|s| s.name).collect();
        assert_eq!(param("sort").unwrap()["schema"]["enum"], json!(sorts));
        for (path, methods) in [
            (collection.clone(), &["get", "post"][..]),
            (
                format!("{collection}/{{id}}"),
                &["get", "patch", "delete"][..],
            ),
            (format!("{collection}/{{id}}/restore"), &["post"][..]),
        ] {
            for method in methods {
                assert!(doc["paths"][&path][method].is_object(), "{method} {path}");
            }
        }
    }
}
