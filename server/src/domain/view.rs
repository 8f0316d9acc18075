//! Role-shaped views: what one caller may see of a record. The access policy
//! (`auth::masking`) makes them from stored records after the cache; the
//! transports map only views to their messages, so no transport can show
//! more than the policy allows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    ProfileId,
    consent::ConsentDecision,
    privacy::FieldClass,
    profile::{Email, ExternalId, Lineage, Phone, PostalAddress, ProfileKind, ProfileStatus},
};

/// What a view withheld or reduced, by field path, and which personal data
/// it carried in the clear (for the audit trail).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disclosure {
    /// Paths shown in masked form (`given_name`, `emails`, `attributes.ssn`).
    pub masked: Vec<String>,
    /// Paths withheld: absent from the view, not empty.
    pub hidden: Vec<String>,
    /// Classes of personal data shown unmasked (non-empty values only).
    pub revealed: BTreeSet<FieldClass>,
}

impl Disclosure {
    /// Records that `path` of `class` is shown as-is (when it holds a value).
    pub fn reveal(&mut self, class: FieldClass, has_value: bool) {
        if has_value && class.is_personal() {
            self.revealed.insert(class);
        }
    }
}

/// A profile as one caller may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileView {
    /// Its id.
    pub id: ProfileId,
    /// Person or organization.
    pub kind: ProfileKind,
    /// Lifecycle status.
    pub status: ProfileStatus,
    /// Given name, possibly masked.
    pub given_name: Option<String>,
    /// Family name, possibly masked.
    pub family_name: Option<String>,
    /// Company name.
    pub company_name: Option<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Email addresses, possibly masked.
    pub emails: Vec<Email>,
    /// Phone numbers, possibly masked.
    pub phones: Vec<Phone>,
    /// Postal addresses, possibly reduced to locality, region and country.
    pub addresses: Vec<PostalAddress>,
    /// `YYYY-MM-DD`, or the year alone when masked.
    pub birth_date: Option<String>,
    /// Primary contact of an organization.
    pub primary_contact_id: Option<ProfileId>,
    /// Free-form traits; personal keys masked or absent.
    pub attributes: Map<String, Value>,
    /// Ids in other systems, possibly masked.
    pub external_ids: Vec<ExternalId>,
    /// Per visible field: source and update time.
    pub lineage: BTreeMap<String, Lineage>,
    /// Per contact point and external id shown: where it came from.
    pub point_lineage: PointLineage,
    /// Share of key fields filled, of the stored record (not of the view).
    pub completeness: f64,
    /// Version, as the etag.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// What was masked, hidden and revealed.
    pub disclosure: Disclosure,
    /// For a MERGED profile: the profile it was merged into.
    pub merged_into: Option<ProfileId>,
    /// The merged id the caller asked for, when it resolved to this profile.
    pub redirected_from: Option<ProfileId>,
}

/// The lineage of each contact point and external id of a view, in the
/// order of its lists (empty where the list is withheld).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointLineage {
    /// Per email address.
    pub emails: Vec<Option<Lineage>>,
    /// Per phone number.
    pub phones: Vec<Option<Lineage>>,
    /// Per postal address.
    pub addresses: Vec<Option<Lineage>>,
    /// Per external id.
    pub external_ids: Vec<Option<Lineage>>,
}

impl ProfileView {
    /// The etag callers send back on update.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    /// Its id (a function, for iterator adapters held across an await).
    pub fn profile_id(&self) -> ProfileId {
        self.id
    }
}

/// A consent decision as one caller may see it: the contact point masked and
/// the evidence absent where the policy says so.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionView {
    /// The decision, with `contact_point.value` and `evidence` already shaped.
    pub decision: ConsentDecision,
    /// What was masked, hidden and revealed.
    pub disclosure: Disclosure,
    /// The profile it was recorded for, when that profile was merged since
    /// into the one whose history shows it (`decision.profile_id`).
    pub recorded_for: Option<ProfileId>,
}
