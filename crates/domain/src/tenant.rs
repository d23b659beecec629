use crate::Invalid;

/// A tenant's size class: it sets how many pooled connections the tenant may
/// hold at once, so one busy tenant cannot starve the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Small,
    Medium,
    Large,
}

impl Tier {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "small" => Ok(Self::Small),
            "medium" => Ok(Self::Medium),
            "large" => Ok(Self::Large),
            _ => Err(Invalid::new("tier", "must be one of small, medium, large")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }

    /// Concurrent database connections a tenant of this tier may hold; the
    /// upper ends of the origin document's ranges (2–5, 5–10, 10–20).
    pub fn connection_limit(self) -> usize {
        match self {
            Self::Small => 5,
            Self::Medium => 10,
            Self::Large => 20,
        }
    }

    /// Requests per second a tenant of this tier may make, sustained. Far
    /// above what a team of people clicking makes; it keeps one tenant's
    /// script from taking every CPU of the machine.
    pub fn request_rate(self) -> u32 {
        match self {
            Self::Small => 50,
            Self::Medium => 150,
            Self::Large => 500,
        }
    }

    /// Milliseconds of database time a tenant's requests may use per
    /// second, sustained: a small tenant gets a tenth of a core however
    /// heavy its requests. A request is charged what it used when it ends;
    /// the next one waits while the tenant is over its budget.
    pub fn db_time_budget_ms(self) -> u32 {
        match self {
            Self::Small => 100,
            Self::Medium => 300,
            Self::Large => 1000,
        }
    }

    /// The longest one statement of the tenant's may run (PostgreSQL's
    /// `statement_timeout`, set in every tenant transaction; never longer
    /// than the request timeout). A CRM's requests take milliseconds; a
    /// statement that runs for seconds is a runaway whose cost the
    /// database-time budget then charges.
    pub fn statement_timeout(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Self::Small => 5,
            Self::Medium => 15,
            Self::Large => 30,
        })
    }

    /// Requests a tenant may make at once above its rate, after a quiet
    /// spell (a page that loads several lists, a script's first burst).
    pub fn request_burst(self) -> u32 {
        self.request_rate() * 2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
    /// Out of service while the operator works on it: 503 `maintenance`.
    Maintenance,
}

impl TenantStatus {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "maintenance" => Ok(Self::Maintenance),
            _ => Err(Invalid::new(
                "status",
                "must be one of active, suspended, maintenance",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Maintenance => "maintenance",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_round_trip_and_limits_grow() {
        for t in [Tier::Small, Tier::Medium, Tier::Large] {
            assert_eq!(Tier::parse(t.as_str()).unwrap(), t);
        }
        assert!(Tier::Small.connection_limit() < Tier::Medium.connection_limit());
        assert!(Tier::Medium.connection_limit() < Tier::Large.connection_limit());
        assert!(Tier::parse("huge").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [TenantStatus::Active, TenantStatus::Suspended] {
            assert_eq!(TenantStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(TenantStatus::parse("deleted").is_err());
    }
}
