//! Who may do what: the role matrix of API.md and a user's overrides, in
//! one place.

use std::collections::BTreeMap;

use crate::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Manager,
    SalesRep,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Manager, Role::SalesRep, Role::Viewer];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| Invalid::new("role", "must be one of admin, manager, sales_rep, viewer"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::SalesRep => "sales_rep",
            Self::Viewer => "viewer",
        }
    }
}

/// The actions a user's `permissions` object can grant or deny by name.
/// Reading records is open to every role and is not an action here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Create companies, contacts, deals, activities (and change the
    /// records one created or owns).
    RecordsCreate,
    /// Update or delete records the user neither created nor owns.
    RecordsUpdateAny,
    /// Restore deleted records and list them (`include_deleted`).
    RecordsRestore,
    PipelineManage,
    CustomFieldsManage,
    UsersManage,
    ContactsImport,
    ContactsExport,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::RecordsCreate,
        Action::RecordsUpdateAny,
        Action::RecordsRestore,
        Action::PipelineManage,
        Action::CustomFieldsManage,
        Action::UsersManage,
        Action::ContactsImport,
        Action::ContactsExport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::RecordsCreate => "records.create",
            Self::RecordsUpdateAny => "records.update_any",
            Self::RecordsRestore => "records.restore",
            Self::PipelineManage => "pipeline.manage",
            Self::CustomFieldsManage => "custom_fields.manage",
            Self::UsersManage => "users.manage",
            Self::ContactsImport => "contacts.import",
            Self::ContactsExport => "contacts.export",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The role matrix of API.md.
    pub fn allowed_for(self, role: Role) -> bool {
        use Role::*;
        match self {
            Self::RecordsCreate | Self::ContactsImport => {
                matches!(role, Admin | Manager | SalesRep)
            }
            Self::RecordsUpdateAny
            | Self::RecordsRestore
            | Self::PipelineManage
            | Self::CustomFieldsManage
            | Self::ContactsExport => matches!(role, Admin | Manager),
            Self::UsersManage => role == Admin,
        }
    }
}

/// A user's overrides of the role matrix: `true` grants, `false` denies,
/// an absent action keeps the role's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(BTreeMap<Action, bool>);

impl Permissions {
    /// Parses the JSON object of API.md; unknown action names and values
    /// that are not booleans are refused, naming `permissions.<key>`.
    pub fn parse(value: &serde_json::Value) -> Result<Self, Invalid> {
        let object = value.as_object().ok_or_else(|| {
            Invalid::new(
                "permissions",
                "must be an object of action names to true or false",
            )
        })?;
        let mut overrides = BTreeMap::new();
        for (key, value) in object {
            let field = || format!("permissions.{key}");
            let action = Action::parse(key).ok_or_else(|| {
                Invalid::new(
                    field(),
                    format!(
                        "unknown action; known actions: {}",
                        Action::ALL.map(Action::name).join(", ")
                    ),
                )
            })?;
            let allowed = value
                .as_bool()
                .ok_or_else(|| Invalid::new(field(), "must be true or false"))?;
            overrides.insert(action, allowed);
        }
        Ok(Self(overrides))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(a, allowed)| (a.name().to_owned(), serde_json::Value::Bool(*allowed)))
                .collect(),
        )
    }
}

/// A signed-in user's rights: a role and its overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    pub overrides: Permissions,
}

impl Access {
    pub fn new(role: Role, overrides: Permissions) -> Self {
        Self { role, overrides }
    }

    pub fn allows(&self, action: Action) -> bool {
        self.overrides
            .0
            .get(&action)
            .copied()
            .unwrap_or_else(|| action.allowed_for(self.role))
    }

    /// Whether the user may update or delete a record, given whether they
    /// created or own it: anyone with `records.update_any`, and writers
    /// (`records.create`) for their own records.
    pub fn may_change_record(&self, is_own: bool) -> bool {
        self.allows(Action::RecordsUpdateAny) || (is_own && self.allows(Action::RecordsCreate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Role::*;

    /// API.md's table, cell by cell: (action, admin, manager, sales_rep, viewer).
    const MATRIX: [(Action, [bool; 4]); 8] = [
        (RecordsCreate, [true, true, true, false]),
        (RecordsUpdateAny, [true, true, false, false]),
        (RecordsRestore, [true, true, false, false]),
        (PipelineManage, [true, true, false, false]),
        (CustomFieldsManage, [true, true, false, false]),
        (UsersManage, [true, false, false, false]),
        (ContactsImport, [true, true, true, false]),
        (ContactsExport, [true, true, false, false]),
    ];

    #[test]
    fn every_cell_of_the_role_matrix() {
        for (action, expected) in MATRIX {
            for (role, allowed) in [Admin, Manager, SalesRep, Viewer].into_iter().zip(expected) {
                let access = Access::new(role, Permissions::default());
                assert_eq!(
                    access.allows(action),
                    allowed,
                    "{} for {}",
                    action.name(),
                    role.as_str()
                );
            }
        }
    }

    #[test]
    fn changing_records_follows_ownership_for_sales_reps() {
        let table = [
            (Admin, [true, true]),
            (Manager, [true, true]),
            (SalesRep, [false, true]),
            (Viewer, [false, false]),
        ];
        for (role, [others, own]) in table {
            let access = Access::new(role, Permissions::default());
            assert_eq!(
                access.may_change_record(false),
                others,
                "{}: others' records",
                role.as_str()
            );
            assert_eq!(
                access.may_change_record(true),
                own,
                "{}: own records",
                role.as_str()
            );
        }
    }

    #[test]
    fn overrides_grant_deny_and_fall_back_to_the_role() {
        let overrides = Permissions::parse(
            &serde_json::json!({"contacts.export": true, "records.create": false}),
        )
        .unwrap();
        let rep = Access::new(SalesRep, overrides);
        assert!(rep.allows(ContactsExport), "granted");
        assert!(!rep.allows(RecordsCreate), "denied");
        assert!(rep.allows(ContactsImport), "absent: the role decides");
        assert!(!rep.may_change_record(true), "no longer a writer");
    }

    #[test]
    fn unknown_actions_and_non_booleans_are_refused_by_name() {
        let err = Permissions::parse(&serde_json::json!({"records.fly": true})).unwrap_err();
        assert_eq!(err.field, "permissions.records.fly");
        let err = Permissions::parse(&serde_json::json!({"users.manage": "yes"})).unwrap_err();
        assert_eq!(err.field, "permissions.users.manage");
        assert!(Permissions::parse(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse("owner").is_err());
    }
}
