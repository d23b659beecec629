//! Money and percentages: exact decimals with two places, never floats.

use crate::Invalid;

/// A decimal amount in hundredths (cents), parsed from a JSON number or a
/// string such as `"12500.00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal2(i128);

impl Decimal2 {
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn as_cents(self) -> i128 {
        self.0
    }
}

impl std::fmt::Display for Decimal2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Parses a decimal with at most two places and at most `int_digits`
/// digits before the point.
pub fn parse(
    field: &'static str,
    value: &serde_json::Value,
    int_digits: usize,
) -> Result<Decimal2, Invalid> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => {
            return Err(Invalid::new(
                field,
                "must be a decimal number (a JSON number or a string like \"12500.00\")",
            ));
        }
    };
    let bad = || {
        Invalid::new(
            field,
            "must be a decimal number with at most two decimals, like \"12500.00\"",
        )
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if digits.contains('.') && fraction.is_empty() {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 {
        return Err(bad());
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > int_digits {
        return Err(Invalid::new(
            field,
            format!("must be less than 1e{int_digits}"),
        ));
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let cents: i128 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let value = whole * 100 + cents;
    Ok(Decimal2(if negative { -value } else { value }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_round_trip_exactly() {
        let p = |v: serde_json::Value| parse("x", &v, 10).map(|d| d.to_string());
        assert_eq!(p(json!("12500.00")).unwrap(), "12500.00");
        assert_eq!(p(json!(12500)).unwrap(), "12500.00");
        assert_eq!(p(json!(0.1)).unwrap(), "0.10");
        assert_eq!(p(json!("-3.5")).unwrap(), "-3.50");
        assert_eq!(p(json!("007.10")).unwrap(), "7.10");
        for bad in [
            json!("1.234"),
            json!("abc"),
            json!("1."),
            json!(".5"),
            json!(""),
            json!(true),
            json!("1e5"),
            json!("12345678901"),
        ] {
            assert!(p(bad.clone()).is_err(), "{bad}");
        }
    }
}
