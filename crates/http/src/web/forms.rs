//! Pieces every form is made of: a labelled input with its error next to
//! it, and reading a refusal's errors by field.

use std::collections::HashMap;

use maud::{Markup, html};

use crate::error::ApiError;

/// The refused fields of a failure, by field name.
#[derive(Default)]
pub(crate) struct Errors(HashMap<String, String>);

impl Errors {
    pub fn of(error: &ApiError) -> Self {
        Self(
            error
                .field_errors()
                .map(|(field, message)| (field.to_owned(), message.to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An input and its `<label>`; the error, when there is one, sits below
/// it and is tied to it for screen readers.
pub(crate) struct Input<'a> {
    pub label: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub autocomplete: &'a str,
    pub required: bool,
}

impl Input<'_> {
    pub fn render(&self, errors: &Errors) -> Markup {
        let id = format!("f-{}", self.name.replace('.', "-"));
        let error = errors.get(self.name);
        let error_id = format!("{id}-error");
        html! {
            div {
                label for=(id) { (self.label) }
                input id=(id) name=(self.name) type=(self.kind) value=(self.value)
                    autocomplete=(self.autocomplete) required[self.required]
                    aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[error.map(|_| error_id.as_str())];
                @if let Some(message) = error {
                    p.field-error id=(error_id) { (self.label) " " (message) }
                }
            }
        }
    }
}

/// The hidden field every state-changing form carries.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}
