//! Pipeline stages: ordered, with a default probability and a kind.

use crate::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Open,
    Won,
    Lost,
}

impl StageKind {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "open" => Ok(Self::Open),
            "won" => Ok(Self::Won),
            "lost" => Ok(Self::Lost),
            _ => Err(Invalid::new("kind", "must be one of open, won, lost")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    /// Whether a deal in a stage of this kind is closed.
    pub fn is_closed(self) -> bool {
        self != Self::Open
    }
}

/// Where a deal's next step stands: its earliest open activity is
/// overdue (due before today, UTC), due today, planned (later, or with no
/// due date), or there is no open activity at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NextStep {
    Overdue,
    Today,
    Planned,
    Missing,
}

impl NextStep {
    pub const ALL: [Self; 4] = [Self::Overdue, Self::Today, Self::Planned, Self::Missing];

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|step| step.as_str() == raw)
            .ok_or_else(|| Invalid::new(field, "must be one of overdue, today, planned, missing"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overdue => "overdue",
            Self::Today => "today",
            Self::Planned => "planned",
            Self::Missing => "missing",
        }
    }

    /// As a deal card says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Overdue => "Next step overdue",
            Self::Today => "Next step due today",
            Self::Planned => "Next step planned",
            Self::Missing => "No next step",
        }
    }
}

/// A stage name: 1–50 characters, no leading or trailing space, no `/`
/// (names appear in paths: `/api/v1/pipeline/stages/{name}`).
pub fn parse_stage_name(field: &'static str, raw: &str) -> Result<String, Invalid> {
    if raw.trim().is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if raw.trim() != raw {
        return Err(Invalid::new(field, "must not start or end with spaces"));
    }
    if raw.chars().count() > 50 {
        return Err(Invalid::new(field, "must be at most 50 characters long"));
    }
    if raw.contains('/') || raw.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "must not contain '/' or control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A percentage such as a probability: 0–100 with at most two decimals,
/// given as a JSON number or a decimal string. Returned as canonical text
/// with two decimals.
pub fn parse_percent(field: &'static str, value: &serde_json::Value) -> Result<String, Invalid> {
    let decimal = crate::decimal::parse(field, value, 3)?;
    if decimal.is_negative() || decimal.as_cents() > 10_000 {
        return Err(Invalid::new(field, "must be between 0 and 100"));
    }
    Ok(decimal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stage_names_and_kinds() {
        assert_eq!(
            parse_stage_name("name", "Demo booked").unwrap(),
            "Demo booked"
        );
        for bad in ["", "  ", " lead", "a/b", &"x".repeat(51)] {
            assert!(parse_stage_name("name", bad).is_err(), "{bad:?}");
        }
        assert!(StageKind::parse("won").unwrap().is_closed());
        assert!(StageKind::parse("maybe").is_err());
    }

    #[test]
    fn percentages_accept_numbers_and_strings_within_range() {
        assert_eq!(parse_percent("p", &json!(25)).unwrap(), "25.00");
        assert_eq!(parse_percent("p", &json!("12.5")).unwrap(), "12.50");
        assert_eq!(parse_percent("p", &json!(100)).unwrap(), "100.00");
        for bad in [
            json!(101),
            json!(-1),
            json!("abc"),
            json!(true),
            json!(1.234),
            json!(null),
        ] {
            assert!(parse_percent("p", &bad).is_err(), "{bad}");
        }
    }
}
