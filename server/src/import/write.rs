//! Loading prepared rows: one unit of work per batch, as every write —
//! identity claims, outbox events, audit records and cache invalidation.

use std::collections::{HashMap, HashSet};

use super::mapping::Prepared;
use crate::{
    auth::Caller,
    cache::CacheChange,
    domain::{
        DomainError, ProfileId, TenantId, events,
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy},
        profile::{self, Profile, ProfileData, ProfileField, ProfileKind, ProfileStatus, limits, record_lineage},
    },
    service::audit_bulk,
    store::{self, Store, UnitOfWork},
};

/// How often a batch is tried again after a concurrent write got in its way.
const ATTEMPTS: usize = 5;

/// Something about a loaded row the report names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// The row's identifier belongs to another live profile: loaded without it.
    IdentifierHeld {
        /// The identifier left out.
        identifier: IdentifierKey,
        /// The profile holding it.
        holder: ProfileId,
    },
    /// The profile holds as many of `field` as it may: the row's extra ones were left out.
    LimitReached {
        /// The list that is full.
        field: &'static str,
    },
    /// The organization's primary contact names a row key no profile has.
    ContactNotFound {
        /// The key named.
        contact: String,
    },
    /// The primary contact named is not a live person, or the row not an organization.
    ContactRefused {
        /// Why.
        reason: String,
    },
    /// The row is no longer in the file.
    Missing {
        /// Whether its profile was marked INACTIVE (`--delete-missing`).
        deactivated: bool,
        /// Why it was kept, when it was.
        kept_because: Option<String>,
    },
}

/// One report line: a row (by line and key), its profile, and the issue.
#[derive(Debug, Clone)]
pub struct Noted {
    /// The row's line (0 for a row missing from the file).
    pub line: u64,
    /// The row's key.
    pub key: String,
    /// Its profile.
    pub profile: ProfileId,
    /// What happened.
    pub issue: Issue,
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rows that created a profile.
    pub created: u64,
    /// Rows that changed their profile.
    pub updated: u64,
    /// Rows loaded before exactly so, or that changed nothing.
    pub unchanged: u64,
    /// What the report lists.
    pub noted: Vec<Noted>,
    /// Organizations whose primary contact is another row: (organization, contact key, line, key).
    pub contacts: Vec<(ProfileId, String, u64, String)>,
}

/// Writes prepared rows of one source into one tenant, as `system:import`.
#[derive(Clone)]
pub struct Loader {
    store: Store,
    tenant: TenantId,
    source: String,
    policy: NormalizationPolicy,
    caller: Caller,
}

impl Loader {
    /// A loader of `source`'s rows into `tenant`.
    pub fn new(store: Store, tenant: TenantId, source: String, policy: NormalizationPolicy) -> Self {
        let caller = Caller::system(tenant.clone(), "import");
        Self { store, tenant, source, policy, caller }
    }

    /// Loads one batch (keys unique within it), trying again when a
    /// concurrent write got in the way.
    pub async fn load(&self, rows: &[Prepared]) -> Result<Loaded, DomainError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.load_once(rows).await {
                Err(DomainError::Aborted(_) | DomainError::StaleEtag { .. }) if attempt < ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn load_once(&self, rows: &[Prepared]) -> Result<Loaded, DomainError> {
        let mut done = Loaded::default();
        let mut work = self.store.begin().await?;
        let conn = work.conn();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let before = store::imports::loaded(conn, &self.tenant, &self.source, &keys).await?;
        let pending: Vec<&Prepared> = rows
            .iter()
            .filter(|row| {
                let same = before.get(&row.key).is_some_and(|b| b.fingerprint == row.fingerprint);
                done.unchanged += u64::from(same);
                !same
            })
            .collect();
        if pending.is_empty() {
            return Ok(done);
        }

        // The live profile each row feeds: the holder of its external id of
        // this source (merges and deletes keep that index current).
        let pending_keys: Vec<&str> = pending.iter().map(|r| r.key.as_str()).collect();
        let holders: HashMap<String, ProfileId> =
            store::identities::holders_of(conn, &self.tenant, IdentifierType::ExternalId, &self.source, &pending_keys)
                .await?
                .into_iter()
                .collect();
        let mut held: Vec<ProfileId> = holders.values().copied().collect();
        held.sort();
        held.dedup();
        let originals: HashMap<ProfileId, Profile> =
            store::profiles::find_many(conn, &self.tenant, &held).await?.into_iter().map(|p| (p.id, p)).collect();
        let now = profile::now();
        let mut current: HashMap<ProfileId, Profile> = HashMap::new();
        let mut fresh: Vec<Profile> = Vec::new();
        let mut fed: Vec<(&Prepared, ProfileId)> = Vec::with_capacity(pending.len());
        for row in pending {
            let existing = holders.get(&row.key).map(|id| originals.get(id).filter(|p| p.data.status.is_live()));
            match existing {
                Some(Some(original)) => {
                    let profile = current.entry(original.id).or_insert_with(|| original.clone());
                    for field in absorb(&mut profile.data, &row.data, &self.policy) {
                        done.noted.push(self.noted(row, profile.id, Issue::LimitReached { field }));
                    }
                    fed.push((row, profile.id));
                }
                // Held by a profile this transaction cannot see or write:
                // deleted or merged since the lookup.
                Some(None) => return Err(DomainError::Aborted("a profile changed under the import".into())),
                None => {
                    let mut profile = Profile {
                        id: ProfileId::generate(),
                        tenant: self.tenant.clone(),
                        data: row.data.clone(),
                        lineage: Default::default(),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                        merged_into: None,
                    };
                    record_lineage(&mut profile.lineage, &profile.data.set_fields(), &self.source, now);
                    fed.push((row, profile.id));
                    fresh.push(profile);
                }
            }
        }

        // Every identifier claimed in one statement, in key order; one held
        // by another profile is left out of the row and reported.
        let mut wanted: Vec<(IdentifierKey, ProfileId)> = Vec::new();
        for profile in &fresh {
            wanted.extend(profile.data.identity_keys(&self.policy).into_iter().map(|(key, _)| (key, profile.id)));
        }
        for (id, profile) in &current {
            let old: HashSet<IdentifierKey> =
                originals[id].data.identity_keys(&self.policy).into_iter().map(|(k, _)| k).collect();
            let new = profile.data.identity_keys(&self.policy).into_iter().map(|(k, _)| k);
            wanted.extend(new.filter(|k| !old.contains(k)).map(|k| (k, *id)));
        }
        let refused = store::identities::claim_free(conn, &self.tenant, &wanted).await?;
        let row_of: HashMap<ProfileId, &Prepared> = fed.iter().map(|(row, id)| (*id, *row)).collect();
        for refusal in &refused {
            let row = row_of.get(&refusal.wanted_by).copied();
            if refusal.key.id_type == IdentifierType::ExternalId
                && refusal.key.namespace == self.source
                && row.is_some_and(|row| row.key == refusal.key.value)
            {
                // The row's own key, taken by a concurrent write: try again.
                return Err(DomainError::Aborted(format!("{} was claimed concurrently", refusal.key)));
            }
            let data = match current.get_mut(&refusal.wanted_by) {
                Some(profile) => &mut profile.data,
                None => match fresh.iter_mut().find(|p| p.id == refusal.wanted_by) {
                    Some(profile) => &mut profile.data,
                    None => continue,
                },
            };
            strip(data, &refusal.key, &self.policy);
            if let Some(row) = row {
                let issue = Issue::IdentifierHeld { identifier: refusal.key.clone(), holder: refusal.holder };
                done.noted.push(self.noted(row, refusal.wanted_by, issue));
            }
        }
        let refused_keys: HashSet<(&IdentifierKey, ProfileId)> =
            refused.iter().map(|r| (&r.key, r.wanted_by)).collect();
        let claimed = |id: ProfileId| -> Vec<IdentifierKey> {
            wanted
                .iter()
                .filter(|(k, p)| *p == id && !refused_keys.contains(&(k, id)))
                .map(|(k, _)| k.clone())
                .collect()
        };

        store::profiles::insert_many(conn, &fresh).await?;
        let mut changed_ids = HashSet::new();
        let mut writes = Vec::new();
        for (id, mut next) in current {
            let original = &originals[&id];
            let changed = original.data.diff(&next.data);
            if changed.is_empty() {
                continue;
            }
            next.version = original.version + 1;
            next.updated_at = now;
            record_lineage(&mut next.lineage, &changed, &self.source, now);
            if !store::profiles::update(conn, &next, original.version).await? {
                return Err(DomainError::Aborted(format!("profile {id} changed under the import")));
            }
            changed_ids.insert(id);
            writes.push((next, changed));
        }
        let conn = work.conn();
        let record: Vec<(&str, ProfileId, &str)> =
            fed.iter().map(|(row, id)| (row.key.as_str(), *id, row.fingerprint.as_str())).collect();
        store::imports::record(conn, &self.tenant, &self.source, &record).await?;

        for (row, id) in &fed {
            if let Some(contact) = &row.primary_contact {
                done.contacts.push((*id, contact.clone(), row.line, row.key.clone()));
            }
        }
        let fresh_ids: HashSet<ProfileId> = fresh.iter().map(|p| p.id).collect();
        for (_, id) in &fed {
            if fresh_ids.contains(id) {
                done.created += 1;
            } else if changed_ids.contains(id) {
                done.updated += 1;
            } else {
                done.unchanged += 1;
            }
        }
        for profile in &fresh {
            work.record(events::profile_created(profile, self.caller.subject()));
            work.invalidate(self.change(profile, claimed(profile.id)));
        }
        for (next, changed) in &writes {
            work.record(events::profile_updated(next, changed, self.caller.subject()));
            work.invalidate(self.change(next, claimed(next.id)));
        }
        let created: Vec<String> = fresh.iter().map(|p| p.id.to_string()).collect();
        let updated: Vec<String> = writes.iter().map(|(p, _)| p.id.to_string()).collect();
        let (created_count, updated_count) = (created.len(), updated.len());
        audit_bulk(&mut work, &self.caller, "profile.create", created, created_count);
        audit_bulk(&mut work, &self.caller, "profile.update", updated, updated_count);
        work.commit().await?;
        Ok(done)
    }

    fn noted(&self, row: &Prepared, profile: ProfileId, issue: Issue) -> Noted {
        Noted { line: row.line, key: row.key.clone(), profile, issue }
    }

    fn change(&self, profile: &Profile, identifiers: Vec<IdentifierKey>) -> CacheChange {
        CacheChange { tenant: self.tenant.clone(), id: profile.id, version: profile.version, identifiers }
    }

    /// Sets each organization's primary contact to the profile of the row
    /// key it names, once every row is loaded (a contact may come later in
    /// the file than its organization).
    pub async fn link_contacts(&self, links: &[(ProfileId, String, u64, String)]) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        for chunk in links.chunks(500) {
            let work = self.store.begin().await?;
            let conn = work.conn();
            let keys: Vec<&str> = chunk.iter().map(|(_, contact, _, _)| contact.as_str()).collect();
            let holders: HashMap<String, ProfileId> =
                store::identities::holders_of(conn, &self.tenant, IdentifierType::ExternalId, &self.source, &keys)
                    .await?
                    .into_iter()
                    .collect();
            let mut ids: Vec<ProfileId> = chunk.iter().map(|(org, ..)| *org).chain(holders.values().copied()).collect();
            ids.sort();
            ids.dedup();
            let profiles: HashMap<ProfileId, Profile> =
                store::profiles::find_many(conn, &self.tenant, &ids).await?.into_iter().map(|p| (p.id, p)).collect();
            let mut written = Vec::new();
            for (org, contact_key, line, key) in chunk {
                let note = |issue| Noted { line: *line, key: key.clone(), profile: *org, issue };
                let Some(contact) = holders.get(contact_key).and_then(|id| profiles.get(id)) else {
                    noted.push(note(Issue::ContactNotFound { contact: contact_key.clone() }));
                    continue;
                };
                let Some(current) = profiles.get(org).filter(|p| p.data.status.is_live()) else { continue };
                let refusal = if current.data.kind != ProfileKind::Organization {
                    Some("only an organization has a primary contact".to_owned())
                } else if contact.data.kind != ProfileKind::Person || !contact.data.status.is_live() {
                    Some(format!("row '{contact_key}' is not a live person"))
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    noted.push(note(Issue::ContactRefused { reason }));
                    continue;
                }
                if current.data.primary_contact_id == Some(contact.id) {
                    continue;
                }
                let mut next = current.clone();
                next.data.primary_contact_id = Some(contact.id);
                next.version += 1;
                next.updated_at = profile::now();
                record_lineage(&mut next.lineage, &[ProfileField::PrimaryContactId], &self.source, next.updated_at);
                if !store::profiles::update(conn, &next, current.version).await? {
                    return Err(DomainError::Aborted(format!("profile {org} changed under the import")));
                }
                written.push(next);
            }
            self.commit_updates(work, written, &[ProfileField::PrimaryContactId], Vec::new()).await?;
        }
        Ok(noted)
    }

    /// Reports the rows earlier imports loaded that this file lacks; with
    /// `deactivate`, marks INACTIVE each whose profile holds nothing but
    /// that row (a profile merged with other records, or given other
    /// external ids since, is kept and the reason reported).
    pub async fn missing(&self, missing: &[(String, ProfileId)], deactivate: bool) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        for chunk in missing.chunks(500) {
            let work = self.store.begin().await?;
            let conn = work.conn();
            let keys: Vec<&str> = chunk.iter().map(|(key, _)| key.as_str()).collect();
            let holders: HashMap<String, ProfileId> =
                store::identities::holders_of(conn, &self.tenant, IdentifierType::ExternalId, &self.source, &keys)
                    .await?
                    .into_iter()
                    .collect();
            let ids: Vec<ProfileId> = holders.values().copied().collect();
            let profiles: HashMap<ProfileId, Profile> =
                store::profiles::find_many(conn, &self.tenant, &ids).await?.into_iter().map(|p| (p.id, p)).collect();
            let mut written = Vec::new();
            let mut released = Vec::new();
            let mut forgotten = Vec::new();
            for (key, loaded_into) in chunk {
                let profile = holders.get(key).and_then(|id| profiles.get(id));
                let kept_because = match profile {
                    None => Some("its profile is no longer live".to_owned()),
                    Some(p) if p.data.external_ids.len() > 1 => {
                        Some("its profile also holds other external ids (merged or given since)".to_owned())
                    }
                    Some(_) => None,
                };
                let deactivated = deactivate && kept_because.is_none();
                let id = profile.map_or(*loaded_into, |p| p.id);
                noted.push(Noted {
                    line: 0,
                    key: key.clone(),
                    profile: id,
                    issue: Issue::Missing { deactivated, kept_because: kept_because.filter(|_| deactivate) },
                });
                let Some(current) = profile.filter(|_| deactivated) else { continue };
                let mut next = current.clone();
                next.data.status = ProfileStatus::Inactive;
                next.version += 1;
                next.updated_at = profile::now();
                record_lineage(&mut next.lineage, &[ProfileField::Status], &self.source, next.updated_at);
                store::identities::release(conn, &self.tenant, current.id, None).await?;
                if !store::profiles::update(conn, &next, current.version).await? {
                    return Err(DomainError::Aborted(format!("profile {} changed under the import", current.id)));
                }
                released.extend(current.data.identity_keys(&self.policy).into_iter().map(|(k, _)| (current.id, k)));
                forgotten.push(key.as_str());
                written.push(next);
            }
            store::imports::forget(conn, &self.tenant, &self.source, &forgotten).await?;
            self.commit_updates(work, written, &[ProfileField::Status], released).await?;
        }
        Ok(noted)
    }

    /// Commits `written` profiles, each changed in `changed`, with their
    /// events, audit and invalidation (`released` identifiers too).
    async fn commit_updates(
        &self,
        mut work: UnitOfWork,
        written: Vec<Profile>,
        changed: &[ProfileField],
        released: Vec<(ProfileId, IdentifierKey)>,
    ) -> Result<(), DomainError> {
        for next in &written {
            work.record(events::profile_updated(next, changed, self.caller.subject()));
            let identifiers = released.iter().filter(|(id, _)| *id == next.id).map(|(_, k)| k.clone()).collect();
            work.invalidate(self.change(next, identifiers));
        }
        let action = if changed == [ProfileField::Status] { "profile.delete" } else { "profile.update" };
        audit_bulk(&mut work, &self.caller, action, written.iter().map(|p| p.id.to_string()).collect(), written.len());
        work.commit().await
    }
}

/// Folds an imported row into the profile it feeds: a filled value replaces
/// the profile's, contact points, external ids and attributes are added,
/// nothing is removed (docs/import.md). Returns the lists that were full.
pub fn absorb(data: &mut ProfileData, row: &ProfileData, policy: &NormalizationPolicy) -> Vec<&'static str> {
    let mut full = Vec::new();
    for (into, from) in [
        (&mut data.given_name, &row.given_name),
        (&mut data.family_name, &row.family_name),
        (&mut data.company_name, &row.company_name),
        (&mut data.segment, &row.segment),
    ] {
        if from.is_some() {
            into.clone_from(from);
        }
    }
    if row.birth_date.is_some() {
        data.birth_date = row.birth_date;
    }
    let emails: HashSet<String> = data.emails.iter().map(|e| policy.email_key(&e.address)).collect();
    let had_primary = data.emails.iter().any(|e| e.primary);
    for email in row.emails.iter().filter(|e| !emails.contains(&policy.email_key(&e.address))) {
        if data.emails.len() >= limits::CONTACTS {
            full.push("emails");
            break;
        }
        data.emails.push(crate::domain::profile::Email { primary: email.primary && !had_primary, ..email.clone() });
    }
    let had_primary = data.phones.iter().any(|p| p.primary);
    for phone in row.phones.iter() {
        if data.phones.iter().any(|p| p.number == phone.number) {
            continue;
        }
        if data.phones.len() >= limits::CONTACTS {
            full.push("phones");
            break;
        }
        data.phones.push(crate::domain::profile::Phone { primary: phone.primary && !had_primary, ..phone.clone() });
    }
    for address in &row.addresses {
        if data.addresses.contains(address) {
            continue;
        }
        if data.addresses.len() >= limits::CONTACTS {
            full.push("addresses");
            break;
        }
        data.addresses.push(address.clone());
    }
    for external in &row.external_ids {
        if data.external_ids.contains(external) {
            continue;
        }
        if data.external_ids.len() >= limits::EXTERNAL_IDS {
            full.push("external_ids");
            break;
        }
        data.external_ids.push(external.clone());
    }
    for (name, value) in &row.attributes {
        data.attributes.insert(name.clone(), value.clone());
    }
    full
}

/// Takes `key` out of `data` (another profile holds it).
fn strip(data: &mut ProfileData, key: &IdentifierKey, policy: &NormalizationPolicy) {
    match key.id_type {
        IdentifierType::Email => data.emails.retain(|e| policy.email_key(&e.address) != key.value),
        IdentifierType::Phone => data.phones.retain(|p| p.number != key.value),
        IdentifierType::ExternalId => data.external_ids.retain(|x| x.source != key.namespace || x.id != key.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::profile::{Email, ExternalId};

    fn email(address: &str, primary: bool) -> Email {
        Email { address: address.into(), label: String::new(), primary }
    }

    #[test]
    fn a_changed_row_adds_and_replaces_but_never_removes() {
        let policy = NormalizationPolicy::default();
        let mut data = ProfileData {
            given_name: Some("Ada".into()),
            family_name: Some("Lovelace".into()),
            emails: vec![email("ada@crm.example", true)],
            external_ids: vec![ExternalId { source: "crm".into(), id: "1".into() }],
            ..ProfileData::default()
        };
        let row = ProfileData {
            given_name: Some("Augusta Ada".into()),
            emails: vec![email("ada@legacy.example", true), email("ADA@crm.example", false)],
            external_ids: vec![ExternalId { source: "legacy".into(), id: "7".into() }],
            ..ProfileData::default()
        };
        assert!(absorb(&mut data, &row, &policy).is_empty());
        assert_eq!(data.given_name.as_deref(), Some("Augusta Ada"));
        assert_eq!(data.family_name.as_deref(), Some("Lovelace"), "an empty cell leaves the value");
        assert_eq!(data.emails, vec![email("ada@crm.example", true), email("ada@legacy.example", false)]);
        assert_eq!(data.external_ids.len(), 2);
    }
}
