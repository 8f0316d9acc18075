//! Authentication and authorization: the only code that decides access.
//!
//! A verified token becomes a [`Caller`]; every service function takes
//! `&Caller` and asks [`Caller::require`] for the permission it needs, so
//! nothing is read or written without one. The tables (RPC → permission,
//! role → permissions) are in [`policy`]; there is no unauthenticated mode.

pub mod masking;
pub mod policy;
mod token;

pub use token::{Claims, JwtKeys, KeySource, TokenError};

use crate::domain::{DomainError, TenantId};

/// A role named in a token's `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything in its tenant.
    Admin,
    /// Reads everything; merges and decides the review queue.
    Steward,
    /// Support/sales: reads full profiles; writes profiles, consents, events.
    Agent,
    /// Reads profiles and segments.
    Marketer,
    /// Reads with personal data masked.
    Analyst,
    /// Machine callers: write profiles, events and consents; read profiles; check consent.
    Service,
    /// The system principal: work no token starts (CLI commands, background
    /// jobs). Never parsed from a token ([`Role::ALL`] leaves it out); only
    /// [`Caller::system`] holds it.
    System,
}

impl Role {
    /// Every role a token can carry.
    pub const ALL: [Self; 6] = [Self::Admin, Self::Steward, Self::Agent, Self::Marketer, Self::Analyst, Self::Service];

    /// The name used in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Steward => "steward",
            Self::Agent => "agent",
            Self::Marketer => "marketer",
            Self::Analyst => "analyst",
            Self::Service => "service",
            Self::System => "system",
        }
    }

    /// Parses a token role name (case-insensitive).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str().eq_ignore_ascii_case(raw))
    }

    /// What this role may do: its row of the table in [`policy`].
    pub fn permissions(self) -> &'static [Permission] {
        policy::permissions(self)
    }
}

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read profiles (get, batch get, list, search, lookup).
    ReadProfiles,
    /// Find profiles by name (search by name prefix): names are visible.
    FindByName,
    /// Find profiles by email or phone (search, lookup): contact details are
    /// visible unmasked.
    FindByContact,
    /// Find profiles by an id in another system (search, lookup): external
    /// ids are visible unmasked.
    FindByExternalId,
    /// List deleted profiles too: paging through everything a tenant ever
    /// held is how data leaves a company.
    ListDeletedProfiles,
    /// Create, update and delete profiles.
    WriteProfiles,
    /// Read consent state and history, and check consent.
    ReadConsents,
    /// Record consent decisions.
    WriteConsents,
    /// Subscribe to the tenant's change stream (payloads masked by role).
    WatchChanges,
    /// Read and change the tenant's settings.
    ManageTenant,
    /// Page through the tenant's audit trail.
    ReadAudit,
    /// Merge profiles, preview merges, read merge history, and run and
    /// follow bulk deduplication jobs.
    MergeProfiles,
}

/// An authenticated caller: who, for which tenant, with which roles. Only
/// token verification makes one (its fields are private), so no request can
/// claim an identity its token does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    subject: String,
    tenant: TenantId,
    roles: Vec<Role>,
    expires_at: u64,
    /// The caller's `x-request-id`, or one made up when first asked for
    /// (most requests are never audited and never need one).
    request_id: std::sync::OnceLock<String>,
}

impl Caller {
    /// The system principal acting for `command` (a CLI command or a
    /// background job, e.g. `seed`) in `tenant`: audited as `system:<command>`.
    /// Code makes it; no request can.
    pub fn system(tenant: TenantId, command: &str) -> Self {
        Self {
            subject: format!("system:{command}"),
            tenant,
            roles: vec![Role::System],
            expires_at: u64::MAX,
            request_id: std::sync::OnceLock::new(),
        }
    }

    /// This caller for one request, identified in the audit by the
    /// caller's `request_id`, if it sent one.
    pub fn for_request(mut self, request_id: Option<String>) -> Self {
        self.request_id = std::sync::OnceLock::new();
        if let Some(id) = request_id {
            let _ = self.request_id.set(id);
        }
        self
    }

    /// The request's id (the caller's `x-request-id`, or a UUID v7 made up
    /// the first time it is asked for).
    pub fn request_id(&self) -> &str {
        self.request_id.get_or_init(|| uuid::Uuid::now_v7().to_string())
    }

    /// The request's id if it has one yet (sent by the caller, or already
    /// made up): coalesced read audits make one only for a record's first read.
    pub fn known_request_id(&self) -> Option<&str> {
        self.request_id.get().map(String::as_str)
    }

    /// Whether this is the system principal.
    pub fn is_system(&self) -> bool {
        self.roles.contains(&Role::System)
    }

    /// The token's `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The token's tenant: the only tenant this caller can see.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Known roles from the token; unknown role names are dropped.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// When the token expires (seconds since the epoch): long-lived streams end then.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Succeeds when one of the caller's roles grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), DomainError> {
        if self.roles.iter().any(|role| role.permissions().contains(&permission)) {
            Ok(())
        } else {
            Err(self.denied(format_args!("do not allow {permission:?}")))
        }
    }

    /// PERMISSION_DENIED naming the caller's roles: "roles [a, b] `what`".
    pub fn denied(&self, what: std::fmt::Arguments<'_>) -> DomainError {
        let roles: Vec<_> = self.roles.iter().map(|r| r.as_str()).collect();
        DomainError::PermissionDenied(format!("roles [{}] {what}", roles.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_grants_writes_to_writers_only() {
        for role in Role::ALL {
            let caller = Caller {
                subject: "s".into(),
                tenant: TenantId::parse("t").expect("tenant"),
                roles: vec![role],
                expires_at: u64::MAX,
                request_id: Default::default(),
            };
            assert!(caller.require(Permission::ReadProfiles).is_ok(), "{role:?} reads");
            let writes = matches!(role, Role::Admin | Role::Agent | Role::Service);
            assert_eq!(caller.require(Permission::WriteProfiles).is_ok(), writes, "{role:?} writes");
            assert!(caller.require(Permission::ReadConsents).is_ok(), "{role:?} reads consents");
            assert_eq!(caller.require(Permission::WriteConsents).is_ok(), writes, "{role:?} sets consents");
            let stewards = matches!(role, Role::Admin | Role::Steward);
            assert_eq!(caller.require(Permission::ListDeletedProfiles).is_ok(), stewards, "{role:?} lists deleted");
            assert!(caller.require(Permission::WatchChanges).is_ok(), "{role:?} watches changes, masked");
            assert_eq!(caller.require(Permission::ManageTenant).is_ok(), role == Role::Admin, "{role:?} manages");
        }
        let nobody = Caller {
            subject: "s".into(),
            tenant: TenantId::parse("t").expect("tenant"),
            roles: vec![],
            expires_at: u64::MAX,
            request_id: Default::default(),
        };
        assert!(nobody.require(Permission::ReadProfiles).is_err());
    }
}
