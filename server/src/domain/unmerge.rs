//! Exact unmerge: what a merge's target and sources become when the merge is
//! undone (docs/merges.md). Pure functions over the profiles as they were
//! before the merge, the target as it is now, and the writes addressed to a
//! source's old id since.
//!
//! - Each source comes back as it was before the merge, with every write
//!   addressed to its old id since replayed onto it.
//! - The target loses exactly what the sources brought: the contact points
//!   and external ids they held and it did not, the values the survivorship
//!   took from them (unless written since), the liveliest status a source
//!   lent it, and what writes through the sources' old ids put on it. It
//!   keeps everything else, including writes addressed to its own id.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    ProfileId,
    identifiers::NormalizationPolicy,
    merge::{MergeRecord, Rule, same_place},
    profile::{
        Email, ExternalId, Lineage, Phone, PostalAddress, Profile, ProfileData, ProfileField, settle_point_lineage,
    },
};

/// One write addressed to a merged source's old id: the target before and after it.
#[derive(Debug, Clone)]
pub struct Redirected {
    /// The old id the write named.
    pub source: ProfileId,
    /// The profile written, before the write.
    pub before: Profile,
    /// After it.
    pub after: Profile,
}

/// The values a merge's profiles take when it is undone.
#[derive(Debug, Clone, PartialEq)]
pub struct Undone {
    /// The target's values and lineage.
    pub target: (ProfileData, BTreeMap<String, Lineage>),
    /// Each source's, in the merge's order.
    pub sources: Vec<(ProfileId, ProfileData, BTreeMap<String, Lineage>)>,
}

/// What other merges into the same target brought, as their records say: a
/// union of several sources is taken apart by these, not by values alone.
#[derive(Debug, Clone, Default)]
pub struct OtherMerges {
    /// Sources of later merges that stand, as they were before them: a
    /// contact point one of them brought too stays with the target.
    pub later: Vec<ProfileData>,
    /// Earlier merges undone after this one was made, each as (its target
    /// before it, its sources before it): what they brought was in the
    /// target before this merge without being the target's own.
    pub withdrawn: Vec<(ProfileData, Vec<ProfileData>)>,
}

/// Undoes `merge` given its profiles as they were before it (`before`: the
/// target and every source), the target now, the writes addressed to the
/// sources' old ids since, oldest first, and the other merges into the
/// same target.
pub fn undo(
    merge: &MergeRecord,
    before: &[Profile],
    target_now: &Profile,
    redirected: &[Redirected],
    others: &OtherMerges,
    policy: &NormalizationPolicy,
) -> Option<Undone> {
    let snapshot = |id: ProfileId| before.iter().find(|p| p.id == id);
    let target_before = snapshot(merge.target)?;
    let mut target = target_now.data.clone();
    let mut target_lineage = target_now.lineage.clone();
    let mut sources: Vec<(ProfileId, ProfileData, BTreeMap<String, Lineage>)> = Vec::new();
    for id in &merge.sources {
        let source = snapshot(*id)?;
        sources.push((*id, source.data.clone(), source.lineage.clone()));
    }

    // Writes through a source's old id, first: onto the source oldest first;
    // off the target newest first, each back to the value before it (which
    // may be one the merge took from a source, given back below).
    for write in redirected {
        if let Some((_, source, lineage)) = sources.iter_mut().find(|(id, _, _)| *id == write.source) {
            replay(source, lineage, write, policy);
        }
    }
    for write in redirected.iter().rev() {
        unwind(&mut target, &target_before.data, write, policy);
    }

    // What the sources brought: out of the target again unless the target
    // held it of its own before (not lent by an earlier merge undone since)
    // or a later merge that stands brought it too (two sources with one
    // address: undoing one merge leaves the address to the other).
    let brought: Vec<&ProfileData> =
        merge.sources.iter().map(|id| snapshot(*id).map(|p| &p.data)).collect::<Option<_>>()?;
    let stays = |point: Point<'_>| {
        let lent = |(had, sources): &(ProfileData, Vec<ProfileData>)| {
            !point.in_(had, policy) && sources.iter().any(|s| point.in_(s, policy))
        };
        (point.in_(&target_before.data, policy) && !others.withdrawn.iter().any(lent))
            || others.later.iter().any(|data| point.in_(data, policy))
    };
    let leaves = |point: Point<'_>| brought.iter().any(|data| point.in_(data, policy)) && !stays(point);
    target.emails.retain(|e| !leaves(Point::Email(e)));
    target.phones.retain(|p| !leaves(Point::Phone(p)));
    target.addresses.retain(|a| !leaves(Point::Address(a)));
    target.external_ids.retain(|x| !leaves(Point::ExternalId(x)));

    // Values the survivorship took from a source: back to the target's own,
    // unless written since (the target no longer holds the merged value).
    for decision in &merge.decisions {
        if decision.from == merge.target || decision.rule == Rule::Union {
            continue;
        }
        let Some(won) = snapshot(decision.from) else { continue };
        let field = decision.field.as_str();
        if let Some(key) = field.strip_prefix("attributes.") {
            if target.attributes.get(key) == won.data.attributes.get(key) {
                set_attribute(&mut target, key, target_before.data.attributes.get(key));
            }
            continue;
        }
        if field == "status" {
            if target.status == won.data.status {
                target.status = target_before.data.status;
                restore_lineage(&mut target_lineage, &target_before.lineage, "status");
            }
            continue;
        }
        let Some(field) = ProfileField::parse_path(field) else { continue };
        if single(&target, field) == single(&won.data, field) {
            target.copy_field(&target_before.data, field);
            restore_lineage(&mut target_lineage, &target_before.lineage, field.path());
        }
    }

    // A primary the target lost with a source's copy: the one it had before.
    if !target.emails.iter().any(|e| e.primary)
        && let Some(primary) = target_before.data.emails.iter().find(|e| e.primary)
        && let Some(kept) = target.emails.iter_mut().find(|e| e.address == primary.address)
    {
        kept.primary = true;
    }
    if !target.phones.iter().any(|p| p.primary)
        && let Some(primary) = target_before.data.phones.iter().find(|p| p.primary)
        && let Some(kept) = target.phones.iter_mut().find(|p| p.number == primary.number)
    {
        kept.primary = true;
    }
    settle_point_lineage(&mut target_lineage, &target, |key| target_before.point_lineage(key).cloned());
    Some(Undone { target: (target, target_lineage), sources })
}

/// A write through a source's old id, onto the source: its values set, its
/// contact points and external ids added or removed (an added one primary
/// only if the source has none), its lineage.
fn replay(
    source: &mut ProfileData,
    lineage: &mut BTreeMap<String, Lineage>,
    write: &Redirected,
    policy: &NormalizationPolicy,
) {
    let (was, now) = (&write.before.data, &write.after.data);
    for field in was.diff(now) {
        match field {
            ProfileField::Emails => {
                for added in now.emails.iter().filter(|e| !holds_email(was, e, policy)) {
                    if !holds_email(source, added, policy) {
                        let primary = added.primary && !source.emails.iter().any(|e| e.primary);
                        source.emails.push(Email { primary, ..added.clone() });
                    }
                }
                for removed in was.emails.iter().filter(|e| !holds_email(now, e, policy)) {
                    source.emails.retain(|e| policy.email_key(&e.address) != policy.email_key(&removed.address));
                }
            }
            ProfileField::Phones => {
                for added in now.phones.iter().filter(|p| !was.phones.iter().any(|w| w.number == p.number)) {
                    if !source.phones.iter().any(|s| s.number == added.number) {
                        let primary = added.primary && !source.phones.iter().any(|p| p.primary);
                        source.phones.push(Phone { primary, ..added.clone() });
                    }
                }
                for removed in was.phones.iter().filter(|p| !now.phones.iter().any(|n| n.number == p.number)) {
                    source.phones.retain(|p| p.number != removed.number);
                }
            }
            ProfileField::Addresses => {
                for added in now.addresses.iter().filter(|a| !was.addresses.iter().any(|w| same_place(w, a))) {
                    if !source.addresses.iter().any(|s| same_place(s, added)) {
                        source.addresses.push(added.clone());
                    }
                }
                for removed in was.addresses.iter().filter(|a| !now.addresses.iter().any(|n| same_place(n, a))) {
                    source.addresses.retain(|a| !same_place(a, removed));
                }
            }
            ProfileField::ExternalIds => {
                for added in now.external_ids.iter().filter(|x| !was.external_ids.contains(x)) {
                    if !source.external_ids.contains(added) {
                        source.external_ids.push(added.clone());
                    }
                }
                for removed in was.external_ids.iter().filter(|x| !now.external_ids.contains(x)) {
                    source.external_ids.retain(|x| x != removed);
                }
            }
            ProfileField::Attributes => {
                for key in changed_keys(was, now) {
                    set_attribute(source, key, now.attributes.get(key));
                }
            }
            ProfileField::Kind => {}
            other => source.copy_field(now, other),
        }
        if let Some(entry) = write.after.lineage.get(field.path()) {
            lineage.insert(field.path().to_owned(), entry.clone());
        }
    }
    settle_point_lineage(lineage, source, |key| write.after.point_lineage(key).cloned());
}

/// A write through a source's old id, off the target: what it added
/// removed, what it removed of the target's own put back, each value it set
/// (and still held) back to the one before it.
fn unwind(target: &mut ProfileData, owned: &ProfileData, write: &Redirected, policy: &NormalizationPolicy) {
    let (was, now) = (&write.before.data, &write.after.data);
    for field in was.diff(now) {
        match field {
            ProfileField::Emails => {
                for added in now.emails.iter().filter(|e| !holds_email(was, e, policy)) {
                    target.emails.retain(|e| policy.email_key(&e.address) != policy.email_key(&added.address));
                }
                for removed in was.emails.iter().filter(|e| !holds_email(now, e, policy)) {
                    if holds_email(owned, removed, policy) && !holds_email(target, removed, policy) {
                        target.emails.push(Email { primary: false, ..removed.clone() });
                    }
                }
            }
            ProfileField::Phones => {
                for added in now.phones.iter().filter(|p| !was.phones.iter().any(|w| w.number == p.number)) {
                    target.phones.retain(|p| p.number != added.number);
                }
                for removed in was.phones.iter().filter(|p| !now.phones.iter().any(|n| n.number == p.number)) {
                    let mine = owned.phones.iter().any(|p| p.number == removed.number);
                    if mine && !target.phones.iter().any(|p| p.number == removed.number) {
                        target.phones.push(Phone { primary: false, ..removed.clone() });
                    }
                }
            }
            ProfileField::Addresses => {
                for added in now.addresses.iter().filter(|a| !was.addresses.iter().any(|w| same_place(w, a))) {
                    target.addresses.retain(|a| !same_place(a, added));
                }
                for removed in was.addresses.iter().filter(|a| !now.addresses.iter().any(|n| same_place(n, a))) {
                    let mine = owned.addresses.iter().any(|a| same_place(a, removed));
                    if mine && !target.addresses.iter().any(|a| same_place(a, removed)) {
                        target.addresses.push(PostalAddress::clone(removed));
                    }
                }
            }
            ProfileField::ExternalIds => {
                for added in now.external_ids.iter().filter(|x| !was.external_ids.contains(x)) {
                    target.external_ids.retain(|x| x != added);
                }
                for removed in was.external_ids.iter().filter(|x| !now.external_ids.contains(x)) {
                    if owned.external_ids.contains(removed) && !target.external_ids.contains(removed) {
                        target.external_ids.push(ExternalId::clone(removed));
                    }
                }
            }
            ProfileField::Attributes => {
                for key in changed_keys(was, now) {
                    if target.attributes.get(key) == now.attributes.get(key) {
                        set_attribute(target, key, was.attributes.get(key));
                    }
                }
            }
            ProfileField::Status => {
                if target.status == now.status {
                    target.status = was.status;
                }
            }
            ProfileField::Kind => {}
            single_valued => {
                if single(target, single_valued) == single(now, single_valued) {
                    target.copy_field(was, single_valued);
                }
            }
        }
    }
}

/// The attribute keys whose value `now` changed from `was`.
fn changed_keys<'a>(was: &'a ProfileData, now: &'a ProfileData) -> Vec<&'a String> {
    let mut keys: Vec<&String> = was.attributes.keys().chain(now.attributes.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| was.attributes.get(*k) != now.attributes.get(*k));
    keys
}

/// One contact point or external id, as a merge unions them.
#[derive(Debug, Clone, Copy)]
enum Point<'a> {
    Email(&'a Email),
    Phone(&'a Phone),
    Address(&'a PostalAddress),
    ExternalId(&'a ExternalId),
}

impl Point<'_> {
    /// Whether `data` holds it (an email by its key, an address by place).
    fn in_(self, data: &ProfileData, policy: &NormalizationPolicy) -> bool {
        match self {
            Point::Email(email) => holds_email(data, email, policy),
            Point::Phone(phone) => data.phones.iter().any(|p| p.number == phone.number),
            Point::Address(address) => data.addresses.iter().any(|a| same_place(a, address)),
            Point::ExternalId(id) => data.external_ids.contains(id),
        }
    }
}

fn holds_email(data: &ProfileData, email: &Email, policy: &NormalizationPolicy) -> bool {
    let key = policy.email_key(&email.address);
    data.emails.iter().any(|e| policy.email_key(&e.address) == key)
}

fn set_attribute(data: &mut ProfileData, key: &str, value: Option<&Value>) {
    match value {
        Some(value) => {
            data.attributes.insert(key.to_owned(), value.clone());
        }
        None => {
            data.attributes.remove(key);
        }
    }
}

fn restore_lineage(lineage: &mut BTreeMap<String, Lineage>, before: &BTreeMap<String, Lineage>, path: &str) {
    match before.get(path) {
        Some(entry) => {
            lineage.insert(path.to_owned(), entry.clone());
        }
        None => {
            lineage.remove(path);
        }
    }
}

/// A single-valued field's value, comparable across profiles.
fn single(data: &ProfileData, field: ProfileField) -> Option<String> {
    match field {
        ProfileField::GivenName => data.given_name.clone(),
        ProfileField::FamilyName => data.family_name.clone(),
        ProfileField::CompanyName => data.company_name.clone(),
        ProfileField::Segment => data.segment.clone(),
        ProfileField::BirthDate => data.birth_date.map(|d| d.to_string()),
        ProfileField::PrimaryContactId => data.primary_contact_id.map(|id| id.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        TenantId,
        merge::{FieldDecision, MergeReason},
        profile::ProfileStatus,
    };

    fn profile(given: &str, status: ProfileStatus, email: &str) -> Profile {
        let now = chrono::Utc::now();
        Profile {
            id: ProfileId::generate(),
            tenant: TenantId::parse("acme").expect("tenant"),
            data: ProfileData {
                given_name: Some(given.into()),
                status,
                emails: vec![Email { address: email.into(), label: String::new(), primary: true }],
                ..ProfileData::default()
            },
            lineage: BTreeMap::new(),
            version: 1,
            created_at: now,
            updated_at: now,
            merged_into: None,
        }
    }

    fn merged(target: &Profile, source: &Profile, decisions: Vec<FieldDecision>) -> MergeRecord {
        MergeRecord {
            id: uuid::Uuid::now_v7(),
            tenant: target.tenant.clone(),
            target: target.id,
            sources: vec![source.id],
            reason: MergeReason::Duplicate,
            actor: "steward".into(),
            at: chrono::Utc::now(),
            decisions,
            undone: None,
        }
    }

    /// Each row: what the target holds now → what it holds once undone.
    #[test]
    fn the_target_gives_back_only_what_the_source_brought() {
        let policy = NormalizationPolicy::default();
        let target = profile("Ann", ProfileStatus::Prospect, "ann@example.com");
        let source = profile("Anne", ProfileStatus::Active, "anne@example.com");
        let decide = |field: &str, from: &Profile, rule| FieldDecision { field: field.into(), from: from.id, rule };
        let merge = merged(
            &target,
            &source,
            vec![decide("given_name", &source, Rule::MostRecent), decide("status", &source, Rule::Liveliest)],
        );
        let mut golden = target.clone();
        golden.data.given_name = Some("Anne".into());
        golden.data.status = ProfileStatus::Active;
        golden.data.emails.push(Email { primary: false, ..source.data.emails[0].clone() });
        golden.data.emails[0].primary = true;
        let before = [target.clone(), source.clone()];

        // Untouched since the merge: the target's own values come back.
        let undone = undo(&merge, &before, &golden, &[], &OtherMerges::default(), &policy).expect("undone");
        assert_eq!(undone.target.0.given_name.as_deref(), Some("Ann"));
        assert_eq!(undone.target.0.status, ProfileStatus::Prospect, "the status the source lent");
        assert_eq!(undone.target.0.emails, target.data.emails);
        assert_eq!(undone.sources[0].1, source.data, "the source exactly as it was");

        // Written on the target since: kept.
        let mut written = golden.clone();
        written.data.given_name = Some("Annie".into());
        let undone = undo(&merge, &before, &written, &[], &OtherMerges::default(), &policy).expect("undone");
        assert_eq!(undone.target.0.given_name.as_deref(), Some("Annie"));

        // Written through the source's old id: the source's, off the target.
        let mut after = golden.clone();
        after.data.given_name = Some("Anna".into());
        let redirected = Redirected { source: source.id, before: golden.clone(), after: after.clone() };
        let undone = undo(&merge, &before, &after, std::slice::from_ref(&redirected), &OtherMerges::default(), &policy)
            .expect("undone");
        assert_eq!(undone.sources[0].1.given_name.as_deref(), Some("Anna"));
        assert_eq!(undone.target.0.given_name.as_deref(), Some("Ann"));

        // Twice through the old id: the source keeps the last, the target
        // unwinds both; a primary email added there is not the source's
        // second primary.
        let mut last = after.clone();
        last.data.given_name = Some("Annie".into());
        last.data.emails.push(Email { address: "annie@example.com".into(), label: String::new(), primary: true });
        for email in last.data.emails.iter_mut().take(2) {
            email.primary = false;
        }
        let second = Redirected { source: source.id, before: after.clone(), after: last.clone() };
        let undone =
            undo(&merge, &before, &last, &[redirected, second], &OtherMerges::default(), &policy).expect("undone");
        assert_eq!(undone.sources[0].1.given_name.as_deref(), Some("Annie"));
        assert_eq!(undone.target.0.given_name.as_deref(), Some("Ann"));
        assert_eq!(undone.sources[0].1.emails.iter().filter(|e| e.primary).count(), 1);
        assert_eq!(undone.target.0.emails, target.data.emails);
    }

    /// Two sources that brought one address: in either order of undoing,
    /// the address stays until the last merge that brought it is undone.
    #[test]
    fn a_contact_point_two_merges_brought_leaves_with_the_last() {
        let policy = NormalizationPolicy::default();
        let home =
            PostalAddress { lines: vec!["12 Harbour Street".into()], locality: "Leith".into(), ..Default::default() };
        let target = profile("Rhona", ProfileStatus::Active, "rhona@example.com");
        let mut sources = [
            profile("Rona", ProfileStatus::Active, "rona@example.com"),
            profile("Rhonda", ProfileStatus::Active, "rhonda@example.com"),
        ];
        for source in &mut sources {
            source.data.addresses = vec![home.clone()];
        }
        let first = merged(&target, &sources[0], vec![]);
        let mut between = target.clone();
        between.data.addresses = vec![home.clone()];
        let mut second = merged(&between, &sources[1], vec![]);
        second.at = first.at + chrono::Duration::seconds(1);
        let mut both = between.clone();
        both.data.emails.extend(sources.iter().map(|s| Email { primary: false, ..s.data.emails[0].clone() }));
        let (before_first, before_second) =
            ([target.clone(), sources[0].clone()], [between.clone(), sources[1].clone()]);

        // The first undone while the second stands, then the second.
        let standing = OtherMerges { later: vec![sources[1].data.clone()], withdrawn: vec![] };
        let undone = undo(&first, &before_first, &both, &[], &standing, &policy).expect("undone");
        assert_eq!(undone.target.0.addresses, std::slice::from_ref(&home), "the second source brought it too");
        let mut now = both.clone();
        now.data = undone.target.0;
        let withdrawn =
            OtherMerges { later: vec![], withdrawn: vec![(target.data.clone(), vec![sources[0].data.clone()])] };
        let undone = undo(&second, &before_second, &now, &[], &withdrawn, &policy).expect("undone");
        assert!(undone.target.0.addresses.is_empty(), "lent by the first merge, undone since");

        // The second undone first: the first still gives it; then the first.
        let undone = undo(&second, &before_second, &both, &[], &OtherMerges::default(), &policy).expect("undone");
        assert_eq!(undone.target.0.addresses, std::slice::from_ref(&home));
        let mut now = both.clone();
        now.data = undone.target.0;
        let undone = undo(&first, &before_first, &now, &[], &OtherMerges::default(), &policy).expect("undone");
        assert!(undone.target.0.addresses.is_empty());
    }
}
