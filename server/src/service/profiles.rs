//! Profile operations.

mod matching;
mod merges;
mod review;
mod unmerge;

pub use matching::{MAX_RESOLVE_RESULTS, MatchExplanation, Resolution, Resolved};
pub use merges::{MergeRequest, Merged};
pub use review::{CandidatePage, Decided};
pub use unmerge::Unmerged;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use tracing::instrument;

use super::{
    Audit, ReadCaps, Tenants, Viewer,
    identity::{self, Identity},
};
use crate::{
    auth::{Caller, Permission, masking::Shape},
    cache::{CacheChange, ProfileCache},
    domain::{
        DomainError, ProfileId,
        audit::AuditRecord,
        error::Violations,
        events::{self, DomainEvent},
        identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy, fold_for_search, normalize_source},
        page::{PageRequest, PageTokens},
        profile::{
            self, Choice, ExternalId, Profile, ProfileData, ProfileField, ProfileInput, ProfileStatus,
            adopt_field_lineage, parse_etag, record_lineage, resolve_update_mask, search_key,
        },
        settings::TenantSettings,
        view::ProfileView,
    },
    store::{self, Store, UnitOfWork, loader::ProfileLoader, profiles::ProfileFilter},
};

/// How long a client request id makes a retry of its write a no-op.
pub const REQUEST_ID_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A client's request id for a write, and a hash of what the request said:
/// a retry with the same id returns the first outcome instead of writing
/// again; the same id on a different request is refused.
#[derive(Debug, Clone, Default)]
pub struct RequestKey {
    /// The client's id; empty: none (every call writes).
    pub id: String,
    /// A hash of the request's content, the id left out.
    pub fingerprint: String,
}

/// Most ids in one BatchGetProfiles.
pub const MAX_BATCH_IDS: usize = 1000;

/// The ids of a batch request (`field`): at most [`MAX_BATCH_IDS`], each a
/// profile id (every bad one named), duplicates dropped, in request order.
pub fn batch_ids(field: &str, ids: &[String]) -> Result<Vec<ProfileId>, DomainError> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(DomainError::invalid(field, format!("at most {MAX_BATCH_IDS} ids, got {}", ids.len())));
    }
    let mut violations = Violations::default();
    let mut seen = HashSet::new();
    let parsed = ids
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| violations.check(format!("{field}[{i}]"), ProfileId::parse(raw)))
        .filter(|id| seen.insert(*id))
        .collect();
    violations.into_result(parsed)
}

/// A person (by the id asked) and the organizations naming them as primary contact.
pub type ContactOrganizations = (ProfileId, Vec<ProfileView>);

/// Most organizations [`Profiles::contact_organizations`] names for one person.
pub const MAX_CONTACT_ORGANIZATIONS: usize = 100;

/// Longest name prefix searched.
const MAX_SEARCH_PREFIX: usize = 200;

/// Profile operations over a store, read through the cache.
#[derive(Clone)]
pub struct Profiles {
    store: Store,
    identity: Identity,
    policy: NormalizationPolicy,
    tenants: Tenants,
    viewer: Viewer,
    audit: Audit,
    caps: ReadCaps,
    pages: PageTokens,
    terms: matching::TermCache,
}

/// An UpdateProfile call.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// The profile to update.
    pub id: String,
    /// New values.
    pub input: ProfileInput,
    /// Field-mask paths.
    pub mask: Vec<String>,
    /// The etag last read, or empty.
    pub etag: String,
    /// Source system for lineage, or empty.
    pub source: String,
    /// The client's request id, if any.
    pub request: RequestKey,
}

/// One criterion of SearchProfiles.
#[derive(Debug, Clone)]
pub enum SearchCriterion {
    /// Prefix of a person's or organization's name.
    NamePrefix(String),
    /// An email address.
    Email(String),
    /// A phone number.
    Phone(String),
    /// An external id.
    ExternalId(ExternalId),
}

/// A page of profiles, as the caller may see them.
#[derive(Debug, Clone)]
pub struct Page {
    /// The profiles.
    pub profiles: Vec<ProfileView>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
}

impl Profiles {
    /// Profile operations on `store` through `cache`, normalizing identifiers
    /// by `policy`; cache misses are read in batches by `loader`; views
    /// follow the tenant settings of `tenants`.
    pub fn new(
        store: Store,
        loader: ProfileLoader,
        cache: ProfileCache,
        policy: NormalizationPolicy,
        tenants: Tenants,
        audit: Audit,
        pages: PageTokens,
    ) -> Self {
        let viewer = Viewer::new(store.clone(), tenants.clone(), policy.clone());
        let caps = ReadCaps::new(cache.clone());
        let identity = Identity::new(store.clone(), loader, cache, policy.clone());
        Self { store, identity, policy, tenants, viewer, audit, caps, pages, terms: Default::default() }
    }

    /// The caller's views of `profiles`, audited as `action` when they
    /// revealed personal data (or `always`: a page of a listing).
    async fn shown<P: AsRef<Profile>>(
        &self,
        caller: &Caller,
        action: &'static str,
        profiles: &[P],
        always: bool,
    ) -> Result<Vec<ProfileView>, DomainError> {
        self.shown_as(caller, action, profiles, always, true).await
    }

    /// [`Self::shown`], counted against the read cap or not.
    async fn shown_as<P: AsRef<Profile>>(
        &self,
        caller: &Caller,
        action: &'static str,
        profiles: &[P],
        always: bool,
        capped: bool,
    ) -> Result<Vec<ProfileView>, DomainError> {
        let settings = self.tenants.of(caller.tenant()).await?;
        if capped {
            self.caps.take(caller, profiles.len(), settings.settings.profile_reads_per_hour).await?;
        }
        let views = self.viewer.many_under(caller, profiles, &settings.settings).await?;
        let revealed: BTreeSet<_> = views.iter().flat_map(|v| v.disclosure.revealed.iter().copied()).collect();
        self.audit.read(caller, action, views.iter().map(ProfileView::profile_id), &revealed, always).await;
        Ok(views)
    }

    /// The caller's view of one profile, audited as `action`.
    async fn shown_one(
        &self,
        caller: &Caller,
        action: &'static str,
        profile: &Profile,
    ) -> Result<ProfileView, DomainError> {
        let mut views = self.shown(caller, action, std::slice::from_ref(profile), false).await?;
        views.pop().ok_or_else(|| DomainError::Internal("one profile, no view".into()))
    }

    /// Creates a profile, claims its identifiers and records
    /// `CustomerProfileCreatedEvent`, all in one transaction.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id))]
    pub async fn create(
        &self,
        caller: &Caller,
        input: ProfileInput,
        source: &str,
        request: &RequestKey,
    ) -> Result<ProfileView, DomainError> {
        caller.require(Permission::WriteProfiles)?;
        let request_id = check_request_id(&request.id)?;
        if let Some(first) = self.replay(caller, request_id, request, "create").await? {
            return Ok(first);
        }
        let settings = self.tenants.of(caller.tenant()).await?;
        let shape = Shape::of(caller);
        for field in input.populated_fields() {
            check_writable(caller, &shape, &settings.settings, field, &input.attributes)?;
        }
        let mut violations = Violations::default();
        let source = lineage_source(source, &mut violations);
        let data = input.apply_to(&ProfileData::default(), &ProfileField::ALL, &self.policy, true, &mut violations);
        data.check_consistency(&self.policy, &mut violations);
        violations.into_result(())?;

        let now = profile::now();
        let mut profile = Profile {
            id: ProfileId::generate(),
            tenant: caller.tenant().clone(),
            data,
            lineage: Default::default(),
            version: 1,
            created_at: now,
            updated_at: now,
            merged_into: None,
        };
        tracing::Span::current().record("profile_id", tracing::field::display(profile.id));
        record_lineage(&mut profile.lineage, &profile.data, &profile.data.set_fields(), &source, now);

        let mut work = self.store.begin().await?;
        if !self.hold_request_id(&work, caller, request_id, request, "create", profile.id).await? {
            drop(work);
            return self.replayed(caller, request_id, request, "create").await;
        }
        self.check_primary_contact(&work, caller, &profile.data, None).await?;
        let identifiers = profile.data.identity_keys(&self.policy);
        store::profiles::insert(work.conn(), &profile).await?;
        store::identities::claim(work.conn(), caller.tenant(), profile.id, &identifiers).await?;
        work.record(events::profile_created(&profile, caller.subject()));
        work.audit(Audit::write(caller, "profile.create", "profile", vec![profile.id.to_string()]));
        work.invalidate(CacheChange {
            tenant: caller.tenant().clone(),
            id: profile.id,
            version: profile.version,
            identifiers: identifiers.into_iter().map(|(key, _)| key).collect(),
        });
        work.commit().await?;
        if self.match_written(&profile).await.is_some() {
            // Merged as it arrived: the answer is the survivor.
            return self.confirmed(caller, profile.id).await;
        }
        self.viewer.one(caller, &profile).await
    }

    /// Reads one profile.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = id))]
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ProfileView, DomainError> {
        caller.require(Permission::ReadProfiles)?;
        let id = parse_id("id", id)?;
        let profile =
            self.identity.stored(caller.tenant(), id).await?.ok_or_else(|| DomainError::profile_not_found(id))?;
        let (profile, redirected_from) = self.identity.follow(caller.tenant(), profile).await?;
        let mut view = self.shown_one(caller, "profile.read", &profile).await?;
        view.redirected_from = redirected_from;
        Ok(view)
    }

    /// Reads up to [`MAX_BATCH_IDS`] profiles in one query; returns them in
    /// request order, and the ids that matched nothing.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), count = ids.len()))]
    pub async fn batch_get(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<(Vec<ProfileView>, Vec<String>), DomainError> {
        caller.require(Permission::ReadProfiles)?;
        let parsed = batch_ids("ids", ids)?;
        let tenant = caller.tenant();
        let mut found = self.identity.stored_many(tenant, &parsed).await?;
        let mut profiles = Vec::with_capacity(found.len());
        let mut redirects = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        for id in parsed {
            match found.remove(&id) {
                Some(profile) => {
                    let (profile, redirected_from) = self.identity.follow(tenant, profile).await?;
                    profiles.push(profile);
                    redirects.push(redirected_from);
                }
                None => missing.push(id.to_string()),
            }
        }
        let mut views = self.shown(caller, "profile.read", &profiles, false).await?;
        for (view, redirected_from) in views.iter_mut().zip(redirects) {
            view.redirected_from = redirected_from;
        }
        Ok((views, missing))
    }

    /// For up to [`MAX_BATCH_IDS`] people, the live organizations naming each
    /// as primary contact (at most [`MAX_CONTACT_ORGANIZATIONS`] each, oldest
    /// first): for each id found, in the order of its first mention, the id
    /// as asked and the organizations; and the ids that found nothing. An
    /// organization naming a merged id counts for the profile it resolves to.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), count = ids.len()))]
    pub async fn contact_organizations(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<(Vec<ContactOrganizations>, Vec<String>), DomainError> {
        caller.require(Permission::ReadProfiles)?;
        let parsed = batch_ids("contact_ids", ids)?;
        let tenant = caller.tenant();
        let mut found = self.identity.stored_many(tenant, &parsed).await?;
        let mut asked = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        for id in parsed {
            match found.remove(&id) {
                Some(profile) => asked.push((id, self.identity.follow(tenant, profile).await?.0.id)),
                None => missing.push(id.to_string()),
            }
        }
        let mut contacts: Vec<ProfileId> = asked.iter().flat_map(|(id, resolved)| [*id, *resolved]).collect();
        contacts.sort();
        contacts.dedup();
        let pairs =
            store::profiles::organizations_of(self.store.db(), tenant, &contacts, MAX_CONTACT_ORGANIZATIONS).await?;
        let organization_ids: Vec<ProfileId> = pairs.iter().map(|(_, org)| *org).collect();
        let loaded = self.identity.stored_many(tenant, &organization_ids).await?;
        let organizations: Vec<Arc<Profile>> =
            organization_ids.iter().filter_map(|id| loaded.get(id).cloned()).collect();
        let views: HashMap<ProfileId, ProfileView> = self
            .shown(caller, "profile.read", &organizations, false)
            .await?
            .into_iter()
            .map(|view| (view.id, view))
            .collect();
        let entries = asked
            .into_iter()
            .map(|(id, resolved)| {
                let mut of: Vec<ProfileView> = pairs
                    .iter()
                    .filter(|(contact, _)| *contact == id || *contact == resolved)
                    .filter_map(|(_, org)| views.get(org).cloned())
                    .collect();
                of.sort_by_key(|view| view.id);
                of.dedup_by_key(|view| view.id);
                of.truncate(MAX_CONTACT_ORGANIZATIONS);
                (id, of)
            })
            .collect();
        Ok((entries, missing))
    }

    /// Applies a field-mask update under optimistic concurrency.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = request.id))]
    pub async fn update(&self, caller: &Caller, request: UpdateRequest) -> Result<ProfileView, DomainError> {
        caller.require(Permission::WriteProfiles)?;
        let request_id = check_request_id(&request.request.id)?;
        if let Some(first) = self.replay(caller, request_id, &request.request, "update").await? {
            return Ok(first);
        }
        let settings = self.tenants.of(caller.tenant()).await?;
        let shape = Shape::of(caller);
        let mut violations = Violations::default();
        let id = violations.check("profile.id", ProfileId::parse(&request.id));
        let source = lineage_source(&request.source, &mut violations);
        let expected = violations.absorb(parse_etag(&request.etag));
        let mut mask = violations.absorb(resolve_update_mask(&request.mask, &request.input));
        // Masked values never flow back: a field the caller cannot see as
        // stored is refused when named (or sent without a mask), and left as
        // it is under `*`.
        let named = request.mask.iter().all(|p| p != "*");
        if let Some(fields) = &mut mask {
            if named {
                for field in fields.iter() {
                    check_writable(caller, &shape, &settings.settings, *field, &request.input.attributes)?;
                }
            } else {
                fields.retain(|field| *field == ProfileField::Attributes || shape.writable(field.class()));
            }
        }
        // Validate the request's own fields before touching the database.
        let updates = mask
            .as_ref()
            .map(|mask| request.input.apply_to(&ProfileData::default(), mask, &self.policy, false, &mut violations));
        violations.into_result(())?;
        let (Some(id), Some(expected), Some(mask), Some(updates)) = (id, expected, mask, updates) else {
            return Err(DomainError::Internal("update validation".into()));
        };

        let work = self.store.begin().await?;
        if !self.hold_request_id(&work, caller, request_id, &request.request, "update", id).await? {
            drop(work);
            return self.replayed(caller, request_id, &request.request, "update").await;
        }
        let (current, redirected_from) = self.load_for_write(&work, caller, id, expected).await?;
        let id = current.id;
        let mut data = current.data.clone();
        for field in &mask {
            data.copy_field(&updates, *field);
        }
        keep_unwritable_attributes(&shape, &settings.settings, &current.data, &mut data);
        let changed = current.data.diff(&data);
        if changed.is_empty() {
            // Nothing written: what the caller gets back is a read. A request
            // id is kept all the same, so a retry after a later write by
            // someone else does not apply this request over it.
            if request_id.is_some() {
                work.commit().await?;
            } else {
                drop(work);
            }
            let mut view = self.shown_one(caller, "profile.read", &current).await?;
            view.redirected_from = redirected_from;
            return Ok(view);
        }
        let mut violations = Violations::default();
        data.check_consistency(&self.policy, &mut violations);
        violations.into_result(())?;
        self.check_primary_contact(&work, caller, &data, Some(id)).await?;

        let now = profile::now();
        let mut next = current.clone();
        next.data = data;
        next.version = current.version + 1;
        next.updated_at = now;
        adopt_field_lineage(&mut next.lineage, &current.data);
        record_lineage(&mut next.lineage, &next.data, &changed, &source, now);
        let identifiers = self.reindex(&work, caller, &current, &next).await?;
        if let Some(old) = redirected_from {
            // What arrived for a merged profile: an unmerge gives it back.
            store::merges::record_redirect(work.conn(), old, &current, &next).await?;
        }
        let event = events::profile_updated(&next, &changed, caller.subject());
        let audit = Audit::write(caller, "profile.update", "profile", vec![id.to_string()]);
        self.commit_write(work, &current, &next, event, identifiers, audit).await?;
        if self.match_written(&next).await.is_some() {
            return self.confirmed(caller, redirected_from.unwrap_or(id)).await;
        }
        let mut view = self.viewer.one(caller, &next).await?;
        view.redirected_from = redirected_from;
        Ok(view)
    }

    /// Soft-deletes a profile: INACTIVE, identifiers released. Idempotent.
    #[instrument(skip_all, fields(tenant = %caller.tenant(), profile_id = id))]
    pub async fn delete(&self, caller: &Caller, id: &str, etag: &str) -> Result<ProfileView, DomainError> {
        caller.require(Permission::WriteProfiles)?;
        let id = parse_id("id", id)?;
        let expected = parse_etag(etag)?;
        let work = self.store.begin().await?;
        let (current, redirected_from) = self.find_for_write(&work, caller, id).await?;
        let id = current.id;
        check_etag(&current, expected)?;
        if current.data.status == ProfileStatus::Inactive {
            drop(work);
            let mut view = self.shown_one(caller, "profile.read", &current).await?;
            view.redirected_from = redirected_from;
            return Ok(view);
        }
        if !current.data.status.is_live() {
            return Err(DomainError::FailedPrecondition(format!(
                "profile {id} is {} and cannot be deleted",
                current.data.status.as_str()
            )));
        }
        let now = profile::now();
        let mut next = current.clone();
        next.data.status = ProfileStatus::Inactive;
        next.version += 1;
        next.updated_at = now;
        record_lineage(&mut next.lineage, &next.data, &[ProfileField::Status], "api", now);
        store::identities::release(work.conn(), caller.tenant(), id, None).await?;
        if let Some(old) = redirected_from {
            store::merges::record_redirect(work.conn(), old, &current, &next).await?;
        }
        let event = events::profile_updated(&next, &[ProfileField::Status], caller.subject());
        let released: Vec<_> = current.data.identity_keys(&self.policy).into_iter().map(|(key, _)| key).collect();
        let audit = Audit::write(caller, "profile.delete", "profile", vec![id.to_string()]);
        self.commit_write(work, &current, &next, event, released, audit).await?;
        let mut view = self.viewer.one(caller, &next).await?;
        view.redirected_from = redirected_from;
        Ok(view)
    }

    /// Lists profiles in creation order.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
        show_deleted: bool,
    ) -> Result<Page, DomainError> {
        caller.require(Permission::ReadProfiles)?;
        if show_deleted {
            caller.require(Permission::ListDeletedProfiles)?;
        }
        let page = self.pages.request(page_size, page_token, caller.tenant(), format!("list:{show_deleted}"))?;
        self.page(caller, &ProfileFilter::All { show_deleted }, &page, "profile.list").await
    }

    /// Finds live profiles by one criterion.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn search(
        &self,
        caller: &Caller,
        criterion: SearchCriterion,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page, DomainError> {
        caller.require(Permission::ReadProfiles)?;
        // No oracles: a caller finds profiles only by what it may see.
        match &criterion {
            SearchCriterion::NamePrefix(_) => caller.require(Permission::FindByName)?,
            SearchCriterion::Email(_) | SearchCriterion::Phone(_) => caller.require(Permission::FindByContact)?,
            SearchCriterion::ExternalId(_) => caller.require(Permission::FindByExternalId)?,
        }
        let key = match criterion {
            SearchCriterion::NamePrefix(raw) => {
                let prefix = search_key(&fold_for_search(&raw));
                if prefix.is_empty() || raw.chars().count() > MAX_SEARCH_PREFIX {
                    return Err(DomainError::invalid(
                        "name_prefix",
                        format!("needs 1 to {MAX_SEARCH_PREFIX} characters with a letter or digit"),
                    ));
                }
                let page = self.pages.request(page_size, page_token, caller.tenant(), format!("name:{prefix}"))?;
                return self.page(caller, &ProfileFilter::NamePrefix(prefix), &page, "profile.search").await;
            }
            SearchCriterion::Email(raw) => self.identity.key(("email", ""), IdentifierType::Email, &raw, "")?,
            SearchCriterion::Phone(raw) => self.identity.key(("phone", ""), IdentifierType::Phone, &raw, "")?,
            SearchCriterion::ExternalId(ext) => self.identity.key(
                ("external_id.id", "external_id.source"),
                IdentifierType::ExternalId,
                &ext.id,
                &ext.source,
            )?,
        };
        // A strong identifier has at most one live holder: one page at most.
        self.pages.request(page_size, page_token, caller.tenant(), String::new())?;
        let profiles = match self.identity.holder(caller.tenant(), &key).await? {
            Some(profile) => vec![profile],
            None => Vec::new(),
        };
        Ok(Page {
            profiles: self.shown(caller, "profile.search", &profiles, false).await?,
            next_page_token: String::new(),
        })
    }

    /// The live profile holding one identifier.
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn lookup(
        &self,
        caller: &Caller,
        id_type: Choice<IdentifierType>,
        value: &str,
        source: &str,
    ) -> Result<ProfileView, DomainError> {
        caller.require(Permission::ReadProfiles)?;
        let id_type = match id_type {
            Choice::Set(t) => t,
            Choice::Unset => return Err(DomainError::invalid("type", "required")),
            Choice::Unknown(n) => {
                return Err(DomainError::invalid("type", format!("unknown identifier type {n}")));
            }
        };
        match id_type {
            IdentifierType::Email | IdentifierType::Phone => caller.require(Permission::FindByContact)?,
            IdentifierType::ExternalId => caller.require(Permission::FindByExternalId)?,
        }
        if id_type != IdentifierType::ExternalId && !source.is_empty() {
            return Err(DomainError::invalid("source", "only an EXTERNAL_ID has a source"));
        }
        let key = self.identity.key(("value", "source"), id_type, value, source)?;
        let profile = self
            .identity
            .holder(caller.tenant(), &key)
            .await?
            // Named by its type, not its value.
            .ok_or_else(|| DomainError::NotFound { resource: "identifier", id: key.id_type.as_str().to_owned() })?;
        self.shown_one(caller, "profile.lookup", &profile).await
    }

    /// A page of `filter`, audited as `action`: every page, masked or not.
    async fn page(
        &self,
        caller: &Caller,
        filter: &ProfileFilter,
        page: &PageRequest,
        action: &'static str,
    ) -> Result<Page, DomainError> {
        let (profiles, more) =
            store::profiles::page(self.store.db(), caller.tenant(), filter, page.after.map(ProfileId::from), page.size)
                .await?;
        let next_page_token = match profiles.last() {
            Some(last) if more => page.next_token(last.id),
            _ => String::new(),
        };
        // Every page of a listing is audited, masked or not: paging through a
        // tenant is how data leaves a company.
        Ok(Page { profiles: self.shown(caller, action, &profiles, true).await?, next_page_token })
    }

    async fn load_for_write(
        &self,
        work: &UnitOfWork,
        caller: &Caller,
        id: ProfileId,
        expected: Option<i64>,
    ) -> Result<(Profile, Option<ProfileId>), DomainError> {
        let (current, redirected_from) = self.find_for_write(work, caller, id).await?;
        check_etag(&current, expected)?;
        if !current.data.status.is_live() {
            return Err(DomainError::FailedPrecondition(format!(
                "profile {} is {} and cannot be updated",
                current.id,
                current.data.status.as_str()
            )));
        }
        Ok((current, redirected_from))
    }

    /// The profile `id` resolves to, locked for this unit of work: for a
    /// merged id the profile it was merged into (a write given an old id
    /// applies to the target, with the target's etag); and the id asked for
    /// when that differs.
    async fn find_for_write(
        &self,
        work: &UnitOfWork,
        caller: &Caller,
        id: ProfileId,
    ) -> Result<(Profile, Option<ProfileId>), DomainError> {
        // Only the profile written is locked, in one query on the common
        // path; merged rows are followed without a lock (a merge repointing
        // them holds theirs).
        let load = |id: ProfileId| async move {
            match store::profiles::find_unmerged_for_update(work.conn(), caller.tenant(), id).await? {
                Some(profile) => Ok(Some(profile)),
                None => store::profiles::find(work.conn(), caller.tenant(), id, false).await,
            }
        };
        let first = load(id).await?.ok_or_else(|| DomainError::profile_not_found(id))?;
        let (profile, redirected_from) = identity::canonical(id, first, load).await?;
        // The merged id was read unlocked: an unmerge that committed while
        // this waited for the target's lock gave it back its own profile.
        if redirected_from.is_some() {
            let reread = |id: ProfileId| store::profiles::find(work.conn(), caller.tenant(), id, false);
            let first = reread(id).await?.ok_or_else(|| DomainError::profile_not_found(id))?;
            let (now, _) = identity::canonical(id, first, reread).await?;
            if now.id != profile.id {
                return Err(DomainError::Aborted(format!("profile {id} was split off again meanwhile; retry")));
            }
        }
        Ok((profile, redirected_from))
    }

    /// Moves identity-index rows from `current`'s identifiers to `next`'s;
    /// returns the identifiers whose holder changed.
    async fn reindex(
        &self,
        work: &UnitOfWork,
        caller: &Caller,
        current: &Profile,
        next: &Profile,
    ) -> Result<Vec<IdentifierKey>, DomainError> {
        let old: HashSet<IdentifierKey> =
            current.data.identity_keys(&self.policy).into_iter().map(|(k, _)| k).collect();
        let new = next.data.identity_keys(&self.policy);
        let new_keys: HashSet<&IdentifierKey> = new.iter().map(|(k, _)| k).collect();
        let released: Vec<IdentifierKey> = old.iter().filter(|k| !new_keys.contains(k)).cloned().collect();
        let added: Vec<(IdentifierKey, String)> = new.into_iter().filter(|(k, _)| !old.contains(k)).collect();
        store::identities::release(work.conn(), caller.tenant(), next.id, Some(&released)).await?;
        store::identities::claim(work.conn(), caller.tenant(), next.id, &added).await?;
        Ok(released.into_iter().chain(added.into_iter().map(|(key, _)| key)).collect())
    }

    /// The first outcome of a write already made under `request_id`: the
    /// profile it wrote, as it is now (a read). `None`: no such write.
    async fn replay(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        request: &RequestKey,
        operation: &str,
    ) -> Result<Option<ProfileView>, DomainError> {
        let Some(request_id) = request_id else { return Ok(None) };
        let Some(first) = store::requests::find(self.store.db(), caller.tenant(), request_id).await? else {
            return Ok(None);
        };
        if first.operation != operation || first.fingerprint != request.fingerprint {
            return Err(DomainError::invalid("request_id", "already used for a different request"));
        }
        self.confirmed(caller, first.profile_id).await.map(Some)
    }

    /// The profile a write wrote, as it is now, by the id it was addressed
    /// to (merged since, or by online matching: the profile it resolves to,
    /// like any read by id). Audited like a read, but not counted against
    /// the read cap: the caller is confirming a write, and "retries are
    /// safe" must hold for a caller at its cap too.
    async fn confirmed(&self, caller: &Caller, id: ProfileId) -> Result<ProfileView, DomainError> {
        let profile = store::profiles::find(self.store.db(), caller.tenant(), id, false)
            .await?
            .ok_or_else(|| DomainError::profile_not_found(id))?;
        let (profile, redirected_from) = self.identity.follow(caller.tenant(), Arc::new(profile)).await?;
        let views = self.shown_as(caller, "profile.read", std::slice::from_ref(&profile), false, false).await?;
        let mut view = views.into_iter().next().ok_or_else(|| DomainError::profile_not_found(id))?;
        view.redirected_from = redirected_from;
        Ok(view)
    }

    /// Records `request_id` (if any) in `work` before anything is written;
    /// `false` when a concurrent call committed it first: the caller then
    /// drops `work` (and with it SQLite's one connection) and answers with
    /// [`Self::replayed`].
    async fn hold_request_id(
        &self,
        work: &UnitOfWork,
        caller: &Caller,
        request_id: Option<&str>,
        request: &RequestKey,
        operation: &str,
        profile_id: ProfileId,
    ) -> Result<bool, DomainError> {
        let Some(request_id) = request_id else { return Ok(true) };
        let recorded = store::requests::Recorded {
            operation: operation.to_owned(),
            profile_id,
            fingerprint: request.fingerprint.clone(),
        };
        store::requests::record(work.conn(), caller.tenant(), request_id, &recorded).await
    }

    /// The outcome of the call that recorded `request_id` first.
    async fn replayed(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        request: &RequestKey,
        operation: &str,
    ) -> Result<ProfileView, DomainError> {
        let first = self.replay(caller, request_id, request, operation).await?;
        first.ok_or_else(|| DomainError::Internal("a request id recorded, then not found".into()))
    }

    /// Writes `next` over `current` (compare-and-set on the version) and
    /// commits it with its event; `identifiers` changed holder.
    async fn commit_write(
        &self,
        mut work: UnitOfWork,
        current: &Profile,
        next: &Profile,
        event: DomainEvent,
        identifiers: Vec<IdentifierKey>,
        audit: AuditRecord,
    ) -> Result<(), DomainError> {
        if !store::profiles::update(work.conn(), next, current.version).await? {
            // Only reachable without row locks: a concurrent writer committed first.
            return Err(DomainError::StaleEtag { sent: current.etag(), current: "newer".into() });
        }
        work.record(event);
        work.audit(audit);
        work.invalidate(CacheChange { tenant: next.tenant.clone(), id: next.id, version: next.version, identifiers });
        work.commit().await
    }

    /// A primary contact must be a live person of the same tenant, not the
    /// organization itself. A merged id names the person it resolves to and
    /// is kept as given: like every merged id it resolves forever, and an
    /// unmerge gives it back its own person with nothing to repoint.
    async fn check_primary_contact(
        &self,
        work: &UnitOfWork,
        caller: &Caller,
        data: &ProfileData,
        this: Option<ProfileId>,
    ) -> Result<(), DomainError> {
        let Some(contact) = data.primary_contact_id else {
            return Ok(());
        };
        let field = "profile.primary_contact_id";
        if Some(contact) == this {
            return Err(DomainError::invalid(field, "an organization cannot be its own primary contact"));
        }
        let load = |id| store::profiles::find(work.conn(), caller.tenant(), id, false);
        let Some(found) = load(contact).await? else {
            return Err(DomainError::invalid(field, format!("no profile {contact}")));
        };
        let (person, _) = identity::canonical(contact, found, load).await?;
        if Some(person.id) == this {
            return Err(DomainError::invalid(field, "an organization cannot be its own primary contact"));
        }
        match person.data.kind == profile::ProfileKind::Person && person.data.status.is_live() {
            true => Ok(()),
            false => Err(DomainError::invalid(field, format!("profile {contact} is not a live person"))),
        }
    }
}

fn check_request_id(raw: &str) -> Result<Option<&str>, DomainError> {
    crate::domain::ids::request_id(raw).map_err(|problem| DomainError::invalid("request_id", problem))
}

fn parse_id(field: &str, raw: &str) -> Result<ProfileId, DomainError> {
    ProfileId::parse(raw).map_err(|e| DomainError::invalid(field, e))
}

/// Refuses a write of `field` (for attributes: of any key in `attributes`)
/// that the caller cannot see as stored.
fn check_writable(
    caller: &Caller,
    shape: &Shape,
    settings: &TenantSettings,
    field: ProfileField,
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), DomainError> {
    let refused = match field {
        ProfileField::Attributes => attributes
            .keys()
            .find(|key| !shape.writable(settings.attribute_class(key)))
            .map(|key| format!("attributes.{}", crate::domain::ids::truncate(key))),
        other => (!shape.writable(other.class())).then(|| other.path().to_owned()),
    };
    match refused {
        Some(path) => Err(caller.denied(format_args!("may not write {path}"))),
        None => Ok(()),
    }
}

/// Keeps the stored values of attribute keys the caller may not write (and
/// drops any it sent), whatever the update did to the attributes.
fn keep_unwritable_attributes(shape: &Shape, settings: &TenantSettings, current: &ProfileData, next: &mut ProfileData) {
    let unwritable = |key: &String| !shape.writable(settings.attribute_class(key));
    next.attributes.retain(|key, _| !unwritable(key));
    for (key, value) in current.attributes.iter().filter(|(key, _)| unwritable(key)) {
        next.attributes.insert(key.clone(), value.clone());
    }
}

fn check_etag(current: &Profile, expected: Option<i64>) -> Result<(), DomainError> {
    match expected {
        Some(version) if version != current.version => {
            Err(DomainError::StaleEtag { sent: version.to_string(), current: current.etag() })
        }
        _ => Ok(()),
    }
}

fn lineage_source(raw: &str, violations: &mut Violations) -> String {
    if raw.is_empty() {
        return "api".to_owned();
    }
    violations.check("source", normalize_source(raw)).unwrap_or_default()
}
