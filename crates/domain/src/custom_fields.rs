//! Custom fields: per-tenant definitions, and checking values against them.

use serde_json::Value;

use crate::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomEntity {
    Contact,
    Company,
    Deal,
}

impl CustomEntity {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "contact" => Ok(Self::Contact),
            "company" => Ok(Self::Company),
            "deal" => Ok(Self::Deal),
            _ => Err(Invalid::new(
                "entity",
                "must be one of contact, company, deal",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Company => "company",
            Self::Deal => "deal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Number,
    Boolean,
    Date,
    Select,
    Multiselect,
}

impl FieldType {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Ok(match raw {
            "text" => Self::Text,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "date" => Self::Date,
            "select" => Self::Select,
            "multiselect" => Self::Multiselect,
            _ => {
                return Err(Invalid::new(
                    "type",
                    "must be one of text, number, boolean, date, select, multiselect",
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Select => "select",
            Self::Multiselect => "multiselect",
        }
    }

    pub fn has_options(self) -> bool {
        matches!(self, Self::Select | Self::Multiselect)
    }
}

/// A key: lower-case letters, digits and `_`, starting with a letter, at
/// most 63 characters (it also names the `cf.<key>` filter and CSV column).
pub fn parse_key(raw: &str) -> Result<String, Invalid> {
    let ok = raw.len() <= 63
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(Invalid::new(
            "key",
            "must start with a-z and hold only a-z, 0-9 and _ (at most 63 characters)",
        ))
    }
}

/// Options of a select or multiselect: distinct, non-empty strings.
pub fn parse_options(
    field_type: FieldType,
    options: Option<&Value>,
) -> Result<Option<Vec<String>>, Invalid> {
    match (field_type.has_options(), options) {
        (false, None | Some(Value::Null)) => Ok(None),
        (false, Some(_)) => Err(Invalid::new(
            "options",
            "are only for select and multiselect fields",
        )),
        (true, None | Some(Value::Null)) => Err(Invalid::new(
            "options",
            "are required for select and multiselect fields",
        )),
        (true, Some(Value::Array(items))) => {
            let mut seen = Vec::new();
            for item in items {
                let Some(text) = item
                    .as_str()
                    .filter(|t| !t.trim().is_empty() && t.chars().count() <= 100)
                else {
                    return Err(Invalid::new(
                        "options",
                        "must be non-empty strings of at most 100 characters",
                    ));
                };
                if seen.iter().any(|s| s == text) {
                    return Err(Invalid::new("options", format!("'{text}' is listed twice")));
                }
                seen.push(text.to_owned());
            }
            if seen.is_empty() {
                return Err(Invalid::new("options", "must list at least one option"));
            }
            Ok(Some(seen))
        }
        (true, Some(_)) => Err(Invalid::new("options", "must be an array of strings")),
    }
}

/// A definition as the checks need it.
#[derive(Debug, Clone)]
pub struct Definition {
    pub key: String,
    pub field_type: FieldType,
    pub options: Vec<String>,
    pub required: bool,
}

impl Definition {
    /// Checks one value; the error is reported against `custom_fields.<key>`.
    pub fn check(&self, value: &Value) -> Result<(), Invalid> {
        let field = format!("custom_fields.{}", self.key);
        let fail = |message: &str| Err(Invalid::new(field.clone(), message));
        match (self.field_type, value) {
            (FieldType::Text, Value::String(s)) if s.chars().count() <= 10_000 => Ok(()),
            (FieldType::Text, _) => fail("must be a string"),
            (FieldType::Number, Value::Number(_)) => Ok(()),
            (FieldType::Number, _) => fail("must be a number"),
            (FieldType::Boolean, Value::Bool(_)) => Ok(()),
            (FieldType::Boolean, _) => fail("must be true or false"),
            (FieldType::Date, Value::String(s)) if is_date(s) => Ok(()),
            (FieldType::Date, _) => fail("must be a date (YYYY-MM-DD)"),
            (FieldType::Select, Value::String(s)) if self.options.contains(s) => Ok(()),
            (FieldType::Select, _) => fail(&format!("must be one of: {}", self.options.join(", "))),
            (FieldType::Multiselect, Value::Array(items))
                if items.iter().all(|i| {
                    i.as_str()
                        .is_some_and(|s| self.options.iter().any(|o| o == s))
                }) =>
            {
                Ok(())
            }
            (FieldType::Multiselect, _) => {
                fail(&format!("must be a list of: {}", self.options.join(", ")))
            }
        }
    }

    /// The JSON a record must contain to match `cf.<key>=<raw>`: read by
    /// the field's type, so `true` is a boolean for a boolean field; for a
    /// multiselect the record matches if it holds that option.
    pub fn filter_value(&self, raw: &str) -> Result<Value, Invalid> {
        let field = format!("cf.{}", self.key);
        let value = match self.field_type {
            FieldType::Text | FieldType::Select | FieldType::Date => Value::String(raw.to_owned()),
            FieldType::Boolean => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(Invalid::new(field, "must be true or false")),
            },
            FieldType::Number => raw
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .map_err(|_| Invalid::new(field, "must be a number"))?,
            FieldType::Multiselect => Value::Array(vec![Value::String(raw.to_owned())]),
        };
        if self.field_type == FieldType::Date && !is_date(raw) {
            return Err(Invalid::new(
                format!("cf.{}", self.key),
                "must be a date (YYYY-MM-DD)",
            ));
        }
        Ok(serde_json::json!({ self.key.clone(): value }))
    }
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let num = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_digit());
    if !(num(y, 4) && num(m, 2) && num(d, 2)) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (y.parse().unwrap(), m.parse().unwrap(), d.parse().unwrap());
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(field_type: FieldType, options: &[&str]) -> Definition {
        Definition {
            key: "k".into(),
            field_type,
            options: options.iter().map(|s| s.to_string()).collect(),
            required: false,
        }
    }

    #[test]
    fn values_are_checked_by_type_and_options() {
        assert!(def(FieldType::Text, &[]).check(&json!("x")).is_ok());
        assert!(def(FieldType::Text, &[]).check(&json!(1)).is_err());
        assert!(def(FieldType::Number, &[]).check(&json!(1.5)).is_ok());
        assert!(def(FieldType::Number, &[]).check(&json!("1")).is_err());
        assert!(def(FieldType::Boolean, &[]).check(&json!(true)).is_ok());
        assert!(
            def(FieldType::Date, &[])
                .check(&json!("2024-02-29"))
                .is_ok()
        );
        assert!(
            def(FieldType::Date, &[])
                .check(&json!("2023-02-29"))
                .is_err()
        );
        let select = def(FieldType::Select, &["high", "low"]);
        assert!(select.check(&json!("high")).is_ok());
        let err = select.check(&json!("medium")).unwrap_err();
        assert_eq!(err.field, "custom_fields.k");
        let multi = def(FieldType::Multiselect, &["a", "b"]);
        assert!(multi.check(&json!(["a", "b"])).is_ok());
        assert!(multi.check(&json!(["a", "c"])).is_err());
        assert!(multi.check(&json!("a")).is_err());
    }

    #[test]
    fn filters_are_read_by_the_fields_type() {
        assert_eq!(
            def(FieldType::Boolean, &[]).filter_value("true").unwrap(),
            json!({"k": true})
        );
        assert_eq!(
            def(FieldType::Text, &[]).filter_value("true").unwrap(),
            json!({"k": "true"})
        );
        assert_eq!(
            def(FieldType::Number, &[]).filter_value("42").unwrap(),
            json!({"k": 42})
        );
        assert_eq!(
            def(FieldType::Multiselect, &["a"])
                .filter_value("a")
                .unwrap(),
            json!({"k": ["a"]})
        );
        assert!(def(FieldType::Boolean, &[]).filter_value("yes").is_err());
        assert!(def(FieldType::Number, &[]).filter_value("many").is_err());
    }

    #[test]
    fn keys_and_options() {
        assert!(parse_key("decision_maker").is_ok());
        for bad in ["", "Priority", "1st", "a-b", &"a".repeat(64)] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_options(FieldType::Select, Some(&json!(["a", "b"]))).unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        assert!(parse_options(FieldType::Select, None).is_err());
        assert!(parse_options(FieldType::Select, Some(&json!(["a", "a"]))).is_err());
        assert!(parse_options(FieldType::Text, Some(&json!(["a"]))).is_err());
        assert!(parse_options(FieldType::Text, None).unwrap().is_none());
    }
}
