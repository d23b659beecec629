//! Field values, parsed at the edge: a JSON body's value or a query
//! parameter becomes a [`Datum`] of the field's kind, or a refusal that
//! names the field.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::{Map, Value};

use super::{Entity, Field, Kind, STAGE_NAME_MAX};
use crate::decimal::{self, Decimal2};
use crate::{Email, Invalid};

/// A checked value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Text(String),
    Int(i32),
    Decimal(Decimal2),
    Date(NaiveDate),
    Timestamp(DateTime<FixedOffset>),
    Json(Map<String, Value>),
}

impl Datum {
    /// The value as PostgreSQL reads it back from text (the store casts
    /// it to the column's type).
    pub fn to_sql_text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Int(n) => n.to_string(),
            Self::Decimal(d) => d.to_string(),
            Self::Date(d) => d.format("%Y-%m-%d").to_string(),
            Self::Timestamp(t) => t.to_rfc3339(),
            Self::Json(map) => Value::Object(map.clone()).to_string(),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_id(&self) -> Option<i32> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// One slot per field of a record type, in column order.
#[derive(Debug, Clone)]
pub struct ByField<T> {
    entity: &'static Entity,
    slots: Vec<T>,
}

/// The values of a record to create: `None` is SQL NULL.
pub type NewRecord = ByField<Option<Datum>>;

/// The changes to a record: `None` keeps a field, `Some(None)` clears it.
pub type Changes = ByField<Option<Option<Datum>>>;

impl<T: Default + Clone> ByField<T> {
    pub fn new(entity: &'static Entity) -> Self {
        Self {
            entity,
            slots: vec![T::default(); entity.fields.len()],
        }
    }
}

impl<T> ByField<T> {
    pub fn entity(&self) -> &'static Entity {
        self.entity
    }

    fn index(&self, name: &str) -> usize {
        self.entity
            .position(name)
            .unwrap_or_else(|| panic!("{name} is not a field of {}", self.entity.name))
    }

    /// The slot of a field; naming a field the record does not have is a
    /// programming error.
    pub fn get(&self, name: &str) -> &T {
        &self.slots[self.index(name)]
    }

    pub fn get_mut(&mut self, name: &str) -> &mut T {
        let index = self.index(name);
        &mut self.slots[index]
    }

    pub fn set(&mut self, name: &str, value: T) {
        *self.get_mut(name) = value;
    }

    pub fn slots(&self) -> &[T] {
        &self.slots
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static Field, &T)> {
        self.entity.fields.iter().zip(&self.slots)
    }
}

fn string<'v>(name: &'static str, value: &'v Value) -> Result<&'v str, Invalid> {
    value
        .as_str()
        .ok_or_else(|| Invalid::new(name, "must be a string"))
}

fn id(name: &'static str, value: Option<i64>, what: &str) -> Result<Datum, Invalid> {
    value
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .map(Datum::Int)
        .ok_or_else(|| Invalid::new(name, format!("must be the id of a {what}")))
}

fn date(name: &'static str, text: &str) -> Result<Datum, Invalid> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .map(Datum::Date)
        .ok_or_else(|| Invalid::new(name, "must be a date (YYYY-MM-DD)"))
}

fn timestamp(name: &'static str, text: &str) -> Result<Datum, Invalid> {
    DateTime::parse_from_rfc3339(text)
        .map(Datum::Timestamp)
        .map_err(|_| Invalid::new(name, "must be an RFC 3339 timestamp with offset"))
}

fn choice(name: &'static str, options: &[&str], text: &str) -> Result<Datum, Invalid> {
    if options.contains(&text) {
        Ok(Datum::Text(text.to_owned()))
    } else {
        Err(Invalid::new(
            name,
            format!("must be one of {}", options.join(", ")),
        ))
    }
}

/// A non-negative decimal within `max_cents`.
fn money(name: &'static str, value: &Value, int_digits: usize) -> Result<Decimal2, Invalid> {
    let amount = decimal::parse(name, value, int_digits)?;
    if amount.is_negative() {
        return Err(Invalid::new(name, "must not be negative"));
    }
    Ok(amount)
}

impl Field {
    /// Parses a value a body gives; `Ok(None)` is SQL NULL.
    pub fn parse(&self, value: &Value) -> Result<Option<Datum>, Invalid> {
        let name = self.name;
        if value.is_null() {
            return if self.required {
                Err(Invalid::new(name, "is required"))
            } else {
                Ok(None)
            };
        }
        let datum = match self.kind {
            Kind::Text { max } => self.checked_text(string(name, value)?, max)?,
            Kind::Stage => self.checked_text(string(name, value)?, STAGE_NAME_MAX)?,
            Kind::Email => Datum::Text(
                Email::parse_field(name, string(name, value)?)?
                    .as_str()
                    .to_owned(),
            ),
            Kind::Int { min, max } => value
                .as_i64()
                .filter(|n| (min..=max).contains(n))
                .and_then(|n| i32::try_from(n).ok())
                .map(Datum::Int)
                .ok_or_else(|| {
                    Invalid::new(name, format!("must be a whole number from {min} to {max}"))
                })?,
            Kind::Money { int_digits } => Datum::Decimal(money(name, value, int_digits)?),
            Kind::Percent => {
                let percent = money(name, value, 3)?;
                if percent.as_cents() > 10_000 {
                    return Err(Invalid::new(name, "must be between 0 and 100"));
                }
                Datum::Decimal(percent)
            }
            Kind::Currency => value
                .as_str()
                .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()))
                .map(|s| Datum::Text(s.to_ascii_uppercase()))
                .ok_or_else(|| {
                    Invalid::new(name, "must be a three-letter ISO 4217 code such as USD")
                })?,
            Kind::Ref(_) => id(name, value.as_i64(), "record")?,
            Kind::UserRef => id(name, value.as_i64(), "user")?,
            Kind::Date => date(name, value.as_str().unwrap_or_default())?,
            Kind::Timestamp => timestamp(name, value.as_str().unwrap_or_default())?,
            Kind::Choice(options) => choice(name, options, value.as_str().unwrap_or_default())?,
            Kind::CustomFields => Datum::Json(
                value
                    .as_object()
                    .cloned()
                    .ok_or_else(|| Invalid::new(name, "must be an object"))?,
            ),
        };
        Ok(Some(datum))
    }

    /// The value a create takes when the body leaves the field out.
    pub fn default_value(&self) -> Option<Datum> {
        let raw = self.default?;
        let value = match self.kind {
            Kind::CustomFields => serde_json::from_str(raw).ok()?,
            _ => Value::String(raw.to_owned()),
        };
        self.parse(&value).ok().flatten()
    }

    fn checked_text(&self, text: &str, max: usize) -> Result<Datum, Invalid> {
        if self.required && text.trim().is_empty() {
            return Err(Invalid::new(self.name, "is required"));
        }
        if text.chars().count() > max {
            return Err(Invalid::new(
                self.name,
                format!("must be at most {max} characters long"),
            ));
        }
        Ok(Datum::Text(text.to_owned()))
    }

    /// Parses the value of a list filter on this field, from query
    /// parameter `param`. Text is taken as given: a filter on text only
    /// ever matches or not.
    pub fn parse_filter(&self, param: &'static str, raw: &str) -> Result<Datum, Invalid> {
        match self.kind {
            Kind::Ref(_) | Kind::UserRef | Kind::Int { .. } => {
                id(param, raw.parse().ok(), "record")
            }
            Kind::Date => date(param, raw),
            Kind::Timestamp => timestamp(param, raw),
            Kind::Choice(options) => choice(param, options, raw),
            Kind::Text { .. } | Kind::Stage | Kind::Email | Kind::Currency => {
                Ok(Datum::Text(raw.trim().to_owned()))
            }
            Kind::Money { int_digits } => {
                money(param, &Value::String(raw.to_owned()), int_digits).map(Datum::Decimal)
            }
            Kind::Percent => money(param, &Value::String(raw.to_owned()), 3).map(Datum::Decimal),
            Kind::CustomFields => Err(Invalid::new(param, "cannot be filtered on")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(field: Field, value: Value) -> Result<Option<String>, Invalid> {
        field.parse(&value).map(|d| d.map(|d| d.to_sql_text()))
    }

    #[test]
    fn values_are_checked_by_kind() {
        let money = || Field::new("annual_revenue", Kind::Money { int_digits: 13 });
        assert_eq!(
            parse(money(), json!(1250.5)).unwrap(),
            Some("1250.50".into())
        );
        assert!(parse(money(), json!(-1)).is_err());
        let currency = || Field::new("revenue_currency", Kind::Currency);
        assert_eq!(parse(currency(), json!("eur")).unwrap(), Some("EUR".into()));
        assert!(parse(currency(), json!("EURO")).is_err());
        let count = || Field::new("employee_count", Kind::Int { min: 0, max: 10 });
        assert!(parse(count(), json!(11)).is_err());
        assert!(parse(count(), json!("3")).is_err());
        let name = || Field::text("name", 5).required();
        assert!(parse(name(), json!("  ")).is_err());
        assert!(parse(name(), json!(null)).is_err());
        assert!(parse(name(), json!("toolong")).is_err());
        assert_eq!(parse(name(), json!("'; --")).unwrap(), Some("'; --".into()));
        let percent = || Field::new("probability", Kind::Percent);
        assert_eq!(
            parse(percent(), json!("12.5")).unwrap(),
            Some("12.50".into())
        );
        assert!(parse(percent(), json!(100.01)).is_err());
        let date = || Field::new("expected_close_date", Kind::Date);
        assert!(parse(date(), json!("2026-2-1")).is_err());
        assert_eq!(
            parse(date(), json!("2026-02-01")).unwrap(),
            Some("2026-02-01".into())
        );
        let reference = || Field::new("company_id", Kind::Ref(super::super::RecordType::Company));
        assert!(parse(reference(), json!(0)).is_err());
        assert!(parse(reference(), json!(i64::from(i32::MAX) + 1)).is_err());
    }

    #[test]
    fn every_default_is_a_value_of_its_field() {
        for entity in super::super::ENTITIES {
            for field in entity.fields.iter().filter(|f| f.default.is_some()) {
                assert!(field.default_value().is_some(), "{}", field.name);
            }
        }
    }

    #[test]
    fn filters_parse_by_the_kind_of_their_column() {
        let owner = Field::new("owner_id", Kind::UserRef);
        assert_eq!(owner.parse_filter("owner_id", "7").unwrap(), Datum::Int(7));
        let refused = owner.parse_filter("owner_id", "x").unwrap_err();
        assert_eq!(refused.message, "must be the id of a record");
        let kind = Field::new("kind", Kind::Choice(&["call", "note"]));
        assert!(kind.parse_filter("kind", "lunch").is_err());
        let due = Field::new("due_at", Kind::Timestamp);
        assert!(due.parse_filter("due_before", "2026-01-01").is_err());
    }
}
