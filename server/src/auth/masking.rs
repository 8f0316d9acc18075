//! Masking: one policy (role × field class → visible / masked / hidden) that
//! shapes every record a caller receives, on every transport, after the
//! cache. The table is [`rule`]; a caller with several roles sees each class
//! by the most permissive of them ([`Shape::of`]).
//!
//! Marketers see a channel's contact details only where that channel's
//! marketing consent is granted now: the service reads consent per request
//! and hands the answer in as [`ContactGrants`], so a grant that lapses
//! changes the view without any write.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Caller, Role};
use crate::domain::{
    consent::{ConsentDecision, ContactKind},
    privacy::{self, FieldClass},
    profile::{Lineage, PointKey, PostalAddress, Profile, ProfileField, is_point_key},
    settings::TenantSettings,
    view::{DecisionView, Disclosure, PointLineage, ProfileView},
};

/// What a role sees of a class, from least to most permissive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// Absent from the response.
    Hidden,
    /// Present in masked form (`j***@example.com`, a year, a city).
    Masked,
    /// Visible where the channel's marketing consent is granted now, masked
    /// elsewhere (contact details, for marketers).
    WithConsent,
    /// As stored.
    Visible,
}

/// The masking table: what `role` sees of `class`. Documented in
/// `docs/access.md`; a test renders it and compares with the document.
pub fn rule(role: Role, class: FieldClass) -> Rule {
    use FieldClass::*;
    use Rule::*;
    match (role, class) {
        (_, Record | OrganizationName | Segment | Attribute) => Visible,
        (Role::Admin | Role::Steward | Role::System, _) => Visible,
        // Support sees the whole person, but no money.
        (Role::Agent, Financial) => Hidden,
        (Role::Agent, _) => Visible,
        // Machine callers see what they write.
        (Role::Service, _) => Visible,
        (Role::Marketer, Name) => Visible,
        (Role::Marketer, Email | Phone) => WithConsent,
        (Role::Marketer, Address | BirthDate | ExternalId | PersonalAttribute) => Masked,
        (Role::Marketer, Financial | Evidence) => Hidden,
        (Role::Analyst, Financial) => Visible,
        (Role::Analyst, Evidence) => Hidden,
        (Role::Analyst, Name | Email | Phone | Address | BirthDate | ExternalId | PersonalAttribute) => Masked,
    }
}

/// Per email and phone of one profile (in the profile's order): whether
/// that channel's marketing consent allows it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactGrants {
    /// Per email: EMAIL_MARKETING allowed.
    pub emails: Vec<bool>,
    /// Per phone: SMS_MARKETING or PHONE_MARKETING allowed.
    pub phones: Vec<bool>,
}

/// What one caller sees of every class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    rules: [Rule; FieldClass::ALL.len()],
}

impl Shape {
    /// The union of the caller's roles, class by class; no role sees nothing.
    pub fn of(caller: &Caller) -> Self {
        Self::of_roles(caller.roles())
    }

    /// The union of `roles`, class by class.
    pub fn of_roles(roles: &[Role]) -> Self {
        let rules =
            FieldClass::ALL.map(|class| roles.iter().map(|role| rule(*role, class)).max().unwrap_or(Rule::Hidden));
        Self { rules }
    }

    /// What `class` looks like to this caller.
    pub fn rule(&self, class: FieldClass) -> Rule {
        self.rules[class as usize]
    }

    /// Whether views need the profiles' marketing consent ([`ContactGrants`]).
    pub fn needs_consent(&self) -> bool {
        self.rules.contains(&Rule::WithConsent)
    }

    /// Whether the caller may write values of `class`: only what it sees as stored.
    pub fn writable(&self, class: FieldClass) -> bool {
        self.rule(class) == Rule::Visible
    }

    /// The classes of `field`'s values (attributes: one per key present).
    pub fn classes_of(
        field: ProfileField,
        attributes: &Map<String, Value>,
        settings: &TenantSettings,
    ) -> Vec<FieldClass> {
        match field {
            ProfileField::Attributes => attributes.keys().map(|key| settings.attribute_class(key)).collect(),
            other => vec![other.class()],
        }
    }

    /// The view of `profile` for this caller. `grants` is needed when
    /// [`Self::needs_consent`]; without it, consent-gated values are masked.
    pub fn profile(&self, profile: &Profile, settings: &TenantSettings, grants: Option<&ContactGrants>) -> ProfileView {
        let data = &profile.data;
        let mut out = Disclosure::default();
        let mut hidden_fields = Vec::new();

        // Names and segments: free text, masked to their initials.
        let mut text = |field: ProfileField, value: &Option<String>| {
            self.scalar(field, value.as_deref(), str::to_owned, privacy::mask_name, &mut out, &mut hidden_fields)
        };
        let given_name = text(ProfileField::GivenName, &data.given_name);
        let family_name = text(ProfileField::FamilyName, &data.family_name);
        let company_name = text(ProfileField::CompanyName, &data.company_name);
        let segment = text(ProfileField::Segment, &data.segment);
        let birth_date = self.scalar(
            ProfileField::BirthDate,
            data.birth_date,
            privacy::format_date,
            privacy::mask_date,
            &mut out,
            &mut hidden_fields,
        );

        let granted = |list: Option<&Vec<bool>>, i: usize| list.and_then(|l| l.get(i)).copied().unwrap_or(false);
        let emails = self.list(ProfileField::Emails, &data.emails, &mut out, &mut hidden_fields, |i, e, rule| {
            let shown = rule == Rule::Visible || (rule == Rule::WithConsent && granted(grants.map(|g| &g.emails), i));
            let mut e = e.clone();
            if !shown {
                e.address = privacy::mask_email(&e.address);
            }
            (e, shown)
        });
        let phones = self.list(ProfileField::Phones, &data.phones, &mut out, &mut hidden_fields, |i, p, rule| {
            let shown = rule == Rule::Visible || (rule == Rule::WithConsent && granted(grants.map(|g| &g.phones), i));
            let mut p = p.clone();
            if !shown {
                p.number = privacy::mask_phone(&p.number);
            }
            (p, shown)
        });
        let addresses =
            self.list(ProfileField::Addresses, &data.addresses, &mut out, &mut hidden_fields, |_, a, rule| {
                if rule == Rule::Visible {
                    return (a.clone(), true);
                }
                // Down to the city: street lines and postal code identify a household.
                let reduced = PostalAddress {
                    lines: Vec::new(),
                    locality: a.locality.clone(),
                    region: a.region.clone(),
                    postal_code: String::new(),
                    country_code: a.country_code.clone(),
                    label: a.label.clone(),
                };
                (reduced, false)
            });
        let external_ids =
            self.list(ProfileField::ExternalIds, &data.external_ids, &mut out, &mut hidden_fields, |_, x, rule| {
                let mut x = x.clone();
                let shown = rule == Rule::Visible;
                if !shown {
                    x.id = privacy::mask_id(&x.id);
                }
                (x, shown)
            });

        let mut attributes = Map::new();
        for (key, value) in &data.attributes {
            let class = settings.attribute_class(key);
            match self.rule(class) {
                Rule::Visible => {
                    out.reveal(class, !value.is_null());
                    attributes.insert(key.clone(), value.clone());
                }
                Rule::Masked | Rule::WithConsent => {
                    out.masked.push(format!("attributes.{key}"));
                    attributes.insert(key.clone(), privacy::mask_json(value));
                }
                Rule::Hidden => out.hidden.push(format!("attributes.{key}")),
            }
        }

        // A contact point's lineage key holds its value: it is shown on the
        // contact point, as that is shown, and never as a key.
        let lineage: BTreeMap<_, _> = profile
            .lineage
            .iter()
            .filter(|(key, _)| !is_point_key(key) && !hidden_fields.contains(&key.as_str()))
            .map(|(key, l)| (key.clone(), l.clone()))
            .collect();
        fn points<T: PointKey>(profile: &Profile, shown: &[T], stored: &[T]) -> Vec<Option<Lineage>> {
            if shown.is_empty() {
                return Vec::new();
            }
            stored.iter().map(|point| profile.held_point_lineage(&point.point_key()).cloned()).collect()
        }
        let point_lineage = PointLineage {
            emails: points(profile, &emails, &data.emails),
            phones: points(profile, &phones, &data.phones),
            addresses: points(profile, &addresses, &data.addresses),
            external_ids: points(profile, &external_ids, &data.external_ids),
        };

        ProfileView {
            id: profile.id,
            kind: data.kind,
            status: data.status,
            given_name,
            family_name,
            company_name,
            segment,
            emails,
            phones,
            addresses,
            birth_date,
            primary_contact_id: data.primary_contact_id,
            attributes,
            external_ids,
            lineage,
            point_lineage,
            completeness: data.completeness(),
            version: profile.version,
            created_at: profile.created_at,
            updated_at: profile.updated_at,
            disclosure: out,
            merged_into: profile.merged_into,
            redirected_from: None,
        }
    }

    /// One single-valued field as the caller sees it: `show`n as stored,
    /// `mask`ed, or withheld; what happened is recorded in `out` (and a
    /// withheld field in `hidden_fields`, whose lineage is withheld too).
    fn scalar<T>(
        &self,
        field: ProfileField,
        value: Option<T>,
        show: impl FnOnce(T) -> String,
        mask: impl FnOnce(T) -> String,
        out: &mut Disclosure,
        hidden_fields: &mut Vec<&'static str>,
    ) -> Option<String> {
        let value = value?;
        let class = field.class();
        match self.rule(class) {
            Rule::Visible => {
                out.reveal(class, true);
                Some(show(value))
            }
            Rule::Masked | Rule::WithConsent => {
                out.masked.push(field.path().to_owned());
                Some(mask(value))
            }
            Rule::Hidden => {
                out.hidden.push(field.path().to_owned());
                hidden_fields.push(field.path());
                None
            }
        }
    }

    /// Shapes a list field element by element: `shape(index, value, rule)`
    /// returns the element as shown and whether it is shown as stored.
    fn list<T>(
        &self,
        field: ProfileField,
        values: &[T],
        out: &mut Disclosure,
        hidden_fields: &mut Vec<&'static str>,
        shape: impl Fn(usize, &T, Rule) -> (T, bool),
    ) -> Vec<T> {
        if values.is_empty() {
            return Vec::new();
        }
        let class = field.class();
        let rule = self.rule(class);
        if rule == Rule::Hidden {
            out.hidden.push(field.path().to_owned());
            hidden_fields.push(field.path());
            return Vec::new();
        }
        let mut any_masked = false;
        let mut any_shown = false;
        let shown: Vec<T> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let (value, as_stored) = shape(i, value, rule);
                any_masked |= !as_stored;
                any_shown |= as_stored;
                value
            })
            .collect();
        if any_masked {
            out.masked.push(field.path().to_owned());
        }
        out.reveal(class, any_shown);
        shown
    }

    /// The view of one consent decision: its contact point masked and its
    /// evidence withheld where the policy says so. Consent-gated contact
    /// points are masked here: a decision is not itself a grant to message.
    pub fn decision(&self, mut decision: ConsentDecision) -> DecisionView {
        let mut out = Disclosure::default();
        if let Some(point) = &mut decision.contact_point {
            let (class, mask) = contact_class(point.kind);
            let path = match point.kind {
                ContactKind::Email => "contact_point.email",
                ContactKind::Phone => "contact_point.phone",
            };
            if self.rule(class) == Rule::Visible {
                out.reveal(class, true);
            } else {
                point.value = mask(&point.value);
                out.masked.push(path.to_owned());
            }
        }
        if decision.evidence.is_some() {
            match self.rule(FieldClass::Evidence) {
                Rule::Visible => out.reveal(FieldClass::Evidence, true),
                _ => {
                    decision.evidence = None;
                    out.hidden.push("evidence".to_owned());
                }
            }
        }
        DecisionView { decision, disclosure: out, recorded_for: None }
    }

    /// Shapes a domain event's payload in place (change streams): the
    /// created event's name and a consent event's contact point follow the
    /// same rules as the profile's fields. Consent-gated values are masked:
    /// a stream is not read per profile's consent.
    pub fn event_payload(&self, event_type: &str, payload: &mut Value) -> Disclosure {
        let mut out = Disclosure::default();
        let Some(payload) = payload.as_object_mut() else { return out };
        match event_type {
            "CustomerProfileCreatedEvent" => {
                // Only an organization's name is business data: anything
                // else (a person, or no kind at all) is a person's name.
                let organization = payload.get("kind").and_then(Value::as_str) == Some("ORGANIZATION");
                let class = if organization { FieldClass::OrganizationName } else { FieldClass::Name };
                if let Some(Value::String(name)) = payload.get_mut("name") {
                    match self.rule(class) {
                        Rule::Visible => out.reveal(class, !name.is_empty()),
                        Rule::Hidden => {
                            name.clear();
                            out.hidden.push("name".to_owned());
                        }
                        _ => {
                            *name = privacy::mask_name(name);
                            out.masked.push("name".to_owned());
                        }
                    }
                }
            }
            "ConsentUpdatedEvent" => {
                if let Some(Value::Object(point)) = payload.get_mut("contactPoint") {
                    let email = point.get("type").and_then(Value::as_str) == Some("EMAIL");
                    let (class, mask): (_, fn(&str) -> String) = if email {
                        (FieldClass::Email, privacy::mask_email)
                    } else {
                        (FieldClass::Phone, privacy::mask_phone)
                    };
                    if let Some(Value::String(value)) = point.get_mut("value") {
                        if self.rule(class) == Rule::Visible {
                            out.reveal(class, true);
                        } else {
                            *value = mask(value);
                            out.masked.push("contactPoint.value".to_owned());
                        }
                    }
                }
            }
            // Ids, statuses, versions and field names: no personal data.
            "CustomerProfileUpdatedEvent" => {}
            // An event type this release cannot shape: only a caller that
            // sees every class as stored gets its payload.
            _ => {
                if FieldClass::ALL.iter().any(|class| self.rule(*class) != Rule::Visible) {
                    payload.clear();
                    out.hidden.push("payload".to_owned());
                }
            }
        }
        out
    }
}

/// The class of a contact point of `kind`, and its masked form.
fn contact_class(kind: ContactKind) -> (FieldClass, fn(&str) -> String) {
    match kind {
        ContactKind::Email => (FieldClass::Email, privacy::mask_email),
        ContactKind::Phone => (FieldClass::Phone, privacy::mask_phone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_are_visible_to_every_role_and_admins_see_everything() {
        for role in Role::ALL {
            assert_eq!(rule(role, FieldClass::Record), Rule::Visible, "{role:?}");
        }
        for class in FieldClass::ALL {
            assert_eq!(rule(Role::Admin, class), Rule::Visible, "{class:?}");
            assert_eq!(rule(Role::Steward, class), Rule::Visible, "{class:?}");
        }
    }

    #[test]
    fn several_roles_see_the_union_class_by_class() {
        let both = Shape::of_roles(&[Role::Analyst, Role::Agent]);
        assert_eq!(both.rule(FieldClass::Email), Rule::Visible, "the agent's email");
        assert_eq!(both.rule(FieldClass::Financial), Rule::Visible, "the analyst's figures");
        let marketer_analyst = Shape::of_roles(&[Role::Marketer, Role::Analyst]);
        assert_eq!(marketer_analyst.rule(FieldClass::Email), Rule::WithConsent);
        assert_eq!(marketer_analyst.rule(FieldClass::Name), Rule::Visible);
        assert_eq!(Shape::of_roles(&[]).rule(FieldClass::Record), Rule::Hidden);
    }

    #[test]
    fn an_event_this_release_cannot_shape_reaches_only_callers_that_see_everything() {
        let payload = || serde_json::json!({"customerId": "c1", "name": "Ada Lovelace", "email": "ada@example.com"});
        let mut for_analyst = payload();
        let out = Shape::of_roles(&[Role::Analyst]).event_payload("CustomerErasedEvent", &mut for_analyst);
        assert_eq!(for_analyst, serde_json::json!({}));
        assert_eq!(out.hidden, ["payload"]);
        let mut for_admin = payload();
        Shape::of_roles(&[Role::Admin]).event_payload("CustomerErasedEvent", &mut for_admin);
        assert_eq!(for_admin, payload());
        // A created event without a kind is a person's, masked for analysts.
        let mut created = serde_json::json!({"name": "Ada Lovelace"});
        Shape::of_roles(&[Role::Analyst]).event_payload("CustomerProfileCreatedEvent", &mut created);
        assert_eq!(created["name"], "A*** L***");
    }

    #[test]
    fn a_role_writes_only_what_it_sees_as_stored() {
        let agent = Shape::of_roles(&[Role::Agent]);
        assert!(agent.writable(FieldClass::Email));
        assert!(!agent.writable(FieldClass::Financial));
        assert!(!Shape::of_roles(&[Role::Marketer]).writable(FieldClass::Email));
    }
}

#[cfg(test)]
mod docs {
    use super::*;

    /// The masking table as docs/access.md shows it.
    fn table() -> String {
        let mut out = String::from("| class | admin | steward | agent | marketer | analyst | service |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for class in FieldClass::ALL {
            let cells: Vec<&str> = Role::ALL
                .iter()
                .map(|role| match rule(*role, class) {
                    Rule::Visible => "visible",
                    Rule::Masked => "masked",
                    Rule::WithConsent => "with consent",
                    Rule::Hidden => "hidden",
                })
                .collect();
            out.push_str(&format!("| `{}` | {} |\n", class.as_str(), cells.join(" | ")));
        }
        out
    }

    #[test]
    fn the_documented_masking_table_is_the_one_in_force() {
        assert_eq!(
            Role::ALL.map(Role::as_str),
            ["admin", "steward", "agent", "marketer", "analyst", "service"],
            "the header's order"
        );
        let doc = include_str!("../../../docs/access.md");
        let table = table();
        assert!(doc.contains(&table), "docs/access.md must contain this table:\n{table}");
    }

    #[test]
    fn class_discriminants_index_the_shape() {
        for (i, class) in FieldClass::ALL.into_iter().enumerate() {
            assert_eq!(class as usize, i, "{class:?}");
        }
    }
}
