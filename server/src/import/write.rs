//! Loading prepared rows: one unit of work per batch, as every write —
//! identity claims, outbox events, audit records and cache invalidation.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use sea_orm::ConnectionTrait;

use super::mapping::Prepared;
use crate::{
    auth::Caller,
    cache::CacheChange,
    domain::{
        DomainError, ProfileId, TenantId, events,
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy},
        profile::{self, Profile, ProfileData, ProfileField, ProfileKind, ProfileStatus, limits, record_lineage},
    },
    service::{Audit, audit_bulk, identity::Resolvable},
    store::{self, Store, UnitOfWork, retry},
};

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
    /// Organizations whose primary contact is a row not loaded yet.
    pub contacts: Vec<ContactLink>,
}

/// An organization's row naming its primary contact by that person's row key.
#[derive(Debug, Clone)]
pub struct ContactLink {
    /// The organization's profile.
    pub organization: ProfileId,
    /// The contact's row key.
    pub contact: String,
    /// The line the organization's row starts on.
    pub line: u64,
    /// The organization's row key.
    pub key: String,
}

/// Writes prepared rows of one source into one tenant, as `system:import`.
#[derive(Clone)]
pub struct Loader {
    store: Store,
    tenant: TenantId,
    source: String,
    policy: NormalizationPolicy,
    caller: Caller,
    /// The people this run loaded, by row key: an organization naming one
    /// as its primary contact gets it as it is written.
    people: Arc<Mutex<HashMap<String, ProfileId>>>,
}

impl Loader {
    /// A loader of `source`'s rows into `tenant`.
    pub fn new(store: Store, tenant: TenantId, source: String, policy: NormalizationPolicy) -> Self {
        let caller = Caller::system(tenant.clone(), "import");
        Self { store, tenant, source, policy, caller, people: Arc::default() }
    }

    /// Loads one batch (keys unique within it), trying again when a
    /// concurrent write got in the way.
    pub async fn load(&self, rows: &[Prepared]) -> Result<Loaded, DomainError> {
        retry(|| self.load_once(rows)).await
    }

    async fn load_once(&self, rows: &[Prepared]) -> Result<Loaded, DomainError> {
        let mut done = Loaded::default();
        let mut work = self.store.begin().await?;
        let conn = work.conn();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let before = store::imports::loaded(conn, &self.tenant, &self.source, &keys).await?;
        // The live profile each row feeds: the holder of its external id of
        // this source (merges and deletes keep that index current).
        let holders = self.holders(conn, &keys).await?;
        // Unchanged: loaded whole before, exactly so, into a profile that is
        // still live (a deleted one's row creates a profile again).
        let pending: Vec<&Prepared> = rows
            .iter()
            .filter(|row| {
                let same = before.get(&row.key).is_some_and(|b| b.fingerprint == row.fingerprint)
                    && holders.contains_key(&row.key);
                done.unchanged += u64::from(same);
                !same
            })
            .collect();
        if pending.is_empty() {
            return Ok(done);
        }

        // A row loaded into a profile merged since feeds the target, which
        // holds its key now; the write is the merged profile's all the same
        // (an unmerge gives it back), as one through its old id would be.
        let loaded_elsewhere = pending.iter().filter_map(|row| {
            let loaded = before.get(&row.key)?.profile_id;
            (holders.get(&row.key) != Some(&loaded)).then_some(loaded)
        });
        let originals = self.profiles(conn, holders.values().copied().chain(loaded_elsewhere)).await?;
        let addressed_to = |row: &Prepared, holder: ProfileId| {
            let loaded = originals.get(&before.get(&row.key)?.profile_id)?;
            (loaded.resolves_to() == Some(holder)).then_some(loaded.id)
        };
        let now = profile::now();
        let mut current: HashMap<ProfileId, Profile> = HashMap::new();
        let mut fresh: Vec<Profile> = Vec::new();
        let mut fed: Vec<(&Prepared, ProfileId)> = Vec::with_capacity(pending.len());
        let mut redirects: Vec<Redirect> = Vec::new();
        let mut loaded_into: HashMap<&str, ProfileId> = HashMap::new();
        for row in pending {
            let existing = holders.get(&row.key).map(|id| originals.get(id).filter(|p| p.data.status.is_live()));
            match existing {
                Some(Some(original)) => {
                    let profile = current.entry(original.id).or_insert_with(|| original.clone());
                    let redirected = addressed_to(row, profile.id).map(|old| (old, profile.clone()));
                    for field in absorb(&mut profile.data, &row.data, &self.policy) {
                        done.noted.push(self.noted(row, profile.id, Issue::LimitReached { field }));
                    }
                    if let Some((old, before)) = redirected {
                        loaded_into.insert(&row.key, old);
                        redirects.push(Redirect { addressed_to: old, before, after: profile.clone() });
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
                    record_lineage(&mut profile.lineage, &profile.data, &profile.data.set_fields(), &self.source, now);
                    fed.push((row, profile.id));
                    fresh.push(profile);
                }
            }
        }

        done.contacts = self.link_known_contacts(&fed, &mut fresh, &mut current, now);

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
        let mut row_of: HashMap<ProfileId, &Prepared> = HashMap::with_capacity(fed.len());
        for (row, id) in &fed {
            row_of.entry(*id).or_insert(row);
        }
        let fresh_at: HashMap<ProfileId, usize> = fresh.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        let mut partial: HashSet<ProfileId> = HashSet::new();
        // Kept for identity resolution: a shared email is evidence.
        let mut held = Vec::new();
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
                None => match fresh_at.get(&refusal.wanted_by) {
                    Some(&at) => &mut fresh[at].data,
                    None => continue,
                },
            };
            strip(data, &refusal.key, &self.policy);
            for redirect in redirects.iter_mut().filter(|r| r.after.id == refusal.wanted_by) {
                strip(&mut redirect.before.data, &refusal.key, &self.policy);
                strip(&mut redirect.after.data, &refusal.key, &self.policy);
            }
            partial.insert(refusal.wanted_by);
            held.push(store::identities::Held {
                profile: refusal.wanted_by,
                key: refusal.key.clone(),
                holder: refusal.holder,
            });
            if let Some(row) = row {
                let issue = Issue::IdentifierHeld { identifier: refusal.key.clone(), holder: refusal.holder };
                done.noted.push(self.noted(row, refusal.wanted_by, issue));
            }
        }
        let refused_keys: HashSet<(&IdentifierKey, ProfileId)> =
            refused.iter().map(|r| (&r.key, r.wanted_by)).collect();
        let mut claimed: HashMap<ProfileId, Vec<IdentifierKey>> = HashMap::new();
        for (key, id) in &wanted {
            if !refused_keys.contains(&(key, *id)) {
                claimed.entry(*id).or_default().push(key.clone());
            }
        }
        let mut claimed = |id: ProfileId| claimed.remove(&id).unwrap_or_default();

        store::profiles::insert_many(conn, &fresh).await?;
        store::identities::record_held(conn, &self.tenant, &self.source, &held, now).await?;
        let mut changed_ids = HashSet::new();
        let mut writes = Vec::new();
        // In id order: two batches feeding the same profiles lock them alike.
        let mut current: Vec<(ProfileId, Profile)> = current.into_iter().collect();
        current.sort_by_key(|(id, _)| *id);
        for (id, mut next) in current {
            let original = &originals[&id];
            let changed = original.data.diff(&next.data);
            if changed.is_empty() {
                continue;
            }
            next.version = original.version + 1;
            next.updated_at = now;
            profile::adopt_field_lineage(&mut next.lineage, &original.data);
            record_lineage(&mut next.lineage, &next.data, &changed, &self.source, now);
            if !store::profiles::update(conn, &next, original.version).await? {
                return Err(DomainError::Aborted(format!("profile {id} changed under the import")));
            }
            for redirect in redirects.iter_mut().filter(|r| r.after.id == id) {
                let changed = redirect.before.data.diff(&redirect.after.data);
                if changed.is_empty() {
                    continue;
                }
                redirect.after.version = next.version;
                redirect.after.updated_at = now;
                profile::adopt_field_lineage(&mut redirect.after.lineage, &redirect.before.data);
                record_lineage(&mut redirect.after.lineage, &redirect.after.data, &changed, &self.source, now);
                store::merges::record_redirect(conn, redirect.addressed_to, &redirect.before, &redirect.after).await?;
            }
            changed_ids.insert(id);
            writes.push((next, changed));
        }
        let conn = work.conn();
        // A row loaded only in part (an identifier held elsewhere, a full
        // list) is not remembered as loaded: the next import tries it again.
        for noted in &done.noted {
            partial.insert(noted.profile);
        }
        let record: Vec<(&str, ProfileId, &str)> = fed
            .iter()
            .map(|(row, id)| {
                let fingerprint = if partial.contains(id) { "" } else { row.fingerprint.as_str() };
                // Still the merged profile's row: the next import redirects it too.
                (row.key.as_str(), loaded_into.get(row.key.as_str()).copied().unwrap_or(*id), fingerprint)
            })
            .collect();
        store::imports::record(conn, &self.tenant, &self.source, &record).await?;

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
        let people: Vec<(String, ProfileId)> = fed
            .iter()
            .filter(|(row, _)| row.data.kind == ProfileKind::Person)
            .map(|(row, id)| (row.key.clone(), *id))
            .collect();
        work.commit().await?;
        self.people.lock().map_err(|_| DomainError::Internal("import people poisoned".into()))?.extend(people);
        Ok(done)
    }

    /// Sets the primary contact of each organization in `fed` whose contact
    /// is a person this run loaded already (or loads in this batch); returns
    /// the links left for [`Self::link_contacts`], once every row is in.
    fn link_known_contacts(
        &self,
        fed: &[(&Prepared, ProfileId)],
        fresh: &mut [Profile],
        current: &mut HashMap<ProfileId, Profile>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<ContactLink> {
        let batch: HashMap<&str, ProfileId> = fed
            .iter()
            .filter(|(row, _)| row.data.kind == ProfileKind::Person)
            .map(|(row, id)| (row.key.as_str(), *id))
            .collect();
        let known = self.people.lock().ok();
        let mut later = Vec::new();
        for (row, id) in fed {
            let Some(contact) = &row.primary_contact else { continue };
            let found = batch
                .get(contact.as_str())
                .copied()
                .or_else(|| known.as_ref().and_then(|people| people.get(contact).copied()));
            let is_organization = row.data.kind == ProfileKind::Organization;
            match found.filter(|contact_id| is_organization && contact_id != id) {
                Some(contact_id) => {
                    if let Some(profile) = current.get_mut(id) {
                        profile.data.primary_contact_id = Some(contact_id);
                    } else if let Some(profile) = fresh.iter_mut().find(|p| p.id == *id) {
                        profile.data.primary_contact_id = Some(contact_id);
                        record_lineage(
                            &mut profile.lineage,
                            &profile.data,
                            &[ProfileField::PrimaryContactId],
                            &self.source,
                            now,
                        );
                    }
                }
                None => later.push(ContactLink {
                    organization: *id,
                    contact: contact.clone(),
                    line: row.line,
                    key: row.key.clone(),
                }),
            }
        }
        later
    }

    fn noted(&self, row: &Prepared, profile: ProfileId, issue: Issue) -> Noted {
        Noted { line: row.line, key: row.key.clone(), profile, issue }
    }

    fn change(&self, profile: &Profile, identifiers: Vec<IdentifierKey>) -> CacheChange {
        CacheChange { tenant: self.tenant.clone(), id: profile.id, version: profile.version, identifiers }
    }

    /// The live profile holding each row key's external id of this source.
    async fn holders(
        &self,
        conn: &impl ConnectionTrait,
        keys: &[&str],
    ) -> Result<HashMap<String, ProfileId>, DomainError> {
        let found =
            store::identities::holders_of(conn, &self.tenant, IdentifierType::ExternalId, &self.source, keys).await?;
        Ok(found.into_iter().collect())
    }

    /// The profiles among `ids`, by id.
    async fn profiles(
        &self,
        conn: &impl ConnectionTrait,
        ids: impl Iterator<Item = ProfileId>,
    ) -> Result<HashMap<ProfileId, Profile>, DomainError> {
        let mut ids: Vec<ProfileId> = ids.collect();
        ids.sort_unstable();
        ids.dedup();
        let found = store::profiles::find_many(conn, &self.tenant, &ids).await?;
        Ok(found.into_iter().map(|p| (p.id, p)).collect())
    }

    /// Sets each organization's primary contact to the profile of the row
    /// key it names, once every row is loaded (a contact may come later in
    /// the file than its organization).
    pub async fn link_contacts(&self, links: &[ContactLink]) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        for chunk in links.chunks(500) {
            noted.extend(retry(|| self.link_chunk(chunk)).await?);
        }
        Ok(noted)
    }

    async fn link_chunk(&self, chunk: &[ContactLink]) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        let work = self.store.begin().await?;
        let conn = work.conn();
        let keys: Vec<&str> = chunk.iter().map(|link| link.contact.as_str()).collect();
        let holders = self.holders(conn, &keys).await?;
        let ids = chunk.iter().map(|link| link.organization).chain(holders.values().copied());
        let profiles = self.profiles(conn, ids).await?;
        let mut written = Vec::new();
        for ContactLink { organization: org, contact: contact_key, line, key } in chunk {
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
            record_lineage(
                &mut next.lineage,
                &next.data,
                &[ProfileField::PrimaryContactId],
                &self.source,
                next.updated_at,
            );
            if !store::profiles::update(conn, &next, current.version).await? {
                return Err(DomainError::Aborted(format!("profile {org} changed under the import")));
            }
            written.push(next);
        }
        // Tried again by the next import, once the contact is there.
        let unlinked: Vec<&str> = noted.iter().map(|n| n.key.as_str()).collect();
        store::imports::forget_fingerprints(conn, &self.tenant, &self.source, &unlinked).await?;
        self.commit_updates(work, written, &[ProfileField::PrimaryContactId], Vec::new()).await?;
        Ok(noted)
    }

    /// Reports the rows earlier imports loaded that this file lacks; with
    /// `deactivate`, marks INACTIVE each whose profile holds nothing but
    /// that row (a profile merged with other records, or given other
    /// external ids since, is kept and the reason reported).
    pub async fn missing(&self, missing: &[(String, ProfileId)], deactivate: bool) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        for chunk in missing.chunks(500) {
            noted.extend(retry(|| self.missing_chunk(chunk, deactivate)).await?);
        }
        Ok(noted)
    }

    async fn missing_chunk(&self, chunk: &[(String, ProfileId)], deactivate: bool) -> Result<Vec<Noted>, DomainError> {
        let mut noted = Vec::new();
        let work = self.store.begin().await?;
        let conn = work.conn();
        let keys: Vec<&str> = chunk.iter().map(|(key, _)| key.as_str()).collect();
        let holders = self.holders(conn, &keys).await?;
        let profiles = self.profiles(conn, holders.values().copied()).await?;
        let mut written = Vec::new();
        let mut released = Vec::new();
        let mut forgotten = Vec::new();
        for (key, loaded_into) in chunk {
            let profile = holders.get(key).and_then(|id| profiles.get(id));
            let kept_because = match profile {
                None => Some("its profile is no longer live".to_owned()),
                Some(p) if p.data.external_ids.iter().any(|x| x.source == self.source && x.id != *key) => {
                    Some(format!("its profile also holds another row of '{}' (merged since)", self.source))
                }
                Some(p) if p.id != *loaded_into || merged_into_it(conn, &self.tenant, p.id).await? => {
                    Some("its profile holds other records merged into it".to_owned())
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
            record_lineage(&mut next.lineage, &next.data, &[ProfileField::Status], &self.source, next.updated_at);
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
        Ok(noted)
    }

    /// Audits the run as a whole (`profile.import`, counting the rows read),
    /// so that an import that changed nothing is on record too.
    pub async fn audit_run(&self, summary: &super::Summary) -> Result<(), DomainError> {
        let mut work = self.store.begin().await?;
        let mut record = Audit::write(&self.caller, "profile.import", "import", vec![self.source.clone()]);
        record.count = summary.read as i64;
        work.audit(record);
        work.commit().await
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

/// A row's write onto the target of the profile it was loaded into.
struct Redirect {
    /// The merged profile the row belongs to.
    addressed_to: ProfileId,
    /// The target before the row.
    before: Profile,
    /// The target after it.
    after: Profile,
}

/// Whether any profile was merged into `id` (and not split off again).
async fn merged_into_it(conn: &impl ConnectionTrait, tenant: &TenantId, id: ProfileId) -> Result<bool, DomainError> {
    Ok(store::merges::history(conn, tenant, id).await?.iter().any(|m| m.target == id && m.undone.is_none()))
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
