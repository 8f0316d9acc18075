//! Who may call which RPC, in one file: each RPC and the permission it
//! needs ([`RPCS`]), and each role's permissions ([`permissions`]). The service layer
//! enforces the permissions (every transport goes through it); a test calls
//! every RPC of the service descriptors with every role against the running
//! server, checks each answer against this table, and fails for an RPC the
//! table does not name.

use super::{Permission, Role};

/// Every RPC (`/package.Service/Method`) and the permission it needs.
pub const RPCS: &[(&str, Permission)] = &[
    ("/c360.v1.ProfileService/CreateProfile", Permission::WriteProfiles),
    ("/c360.v1.ProfileService/GetProfile", Permission::ReadProfiles),
    ("/c360.v1.ProfileService/BatchGetProfiles", Permission::ReadProfiles),
    ("/c360.v1.ProfileService/UpdateProfile", Permission::WriteProfiles),
    ("/c360.v1.ProfileService/DeleteProfile", Permission::WriteProfiles),
    ("/c360.v1.ProfileService/ListProfiles", Permission::ReadProfiles),
    ("/c360.v1.ProfileService/SearchProfiles", Permission::ReadProfiles),
    ("/c360.v1.ProfileService/LookupProfile", Permission::ReadProfiles),
    ("/c360.v1.ProfileService/BatchGetContactOrganizations", Permission::ReadProfiles),
    ("/c360.v1.ConsentService/SetConsent", Permission::WriteConsents),
    ("/c360.v1.ConsentService/GetConsents", Permission::ReadConsents),
    ("/c360.v1.ConsentService/ListConsentHistory", Permission::ReadConsents),
    ("/c360.v1.ConsentService/CheckConsent", Permission::ReadConsents),
    ("/c360.v1.ConsentService/BatchCheckConsent", Permission::ReadConsents),
    ("/c360.v1.ConsentService/BatchGetConsents", Permission::ReadConsents),
    ("/c360.v1.EventService/WatchChanges", Permission::WatchChanges),
    ("/c360.v1.TenantService/GetTenantSettings", Permission::ManageTenant),
    ("/c360.v1.TenantService/UpdateTenantSettings", Permission::ManageTenant),
    ("/c360.v1.PrivacyService/ListAuditEvents", Permission::ReadAudit),
    ("/c360.v1.IdentityService/MergeProfiles", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/PreviewMerge", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/ListMergeHistory", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/UnmergeProfile", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/StartDeduplication", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/GetJob", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/CancelJob", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/ListMergeCandidates", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/DecideMergeCandidate", Permission::MergeProfiles),
    ("/c360.v1.IdentityService/ExplainMatch", Permission::MergeProfiles),
    // Each field of the record also needs the permission to search by it
    // (service::profiles::matching).
    ("/c360.v1.IdentityService/ResolveIdentity", Permission::ReadProfiles),
];

/// What each role may do: one row per role.
pub fn permissions(role: Role) -> &'static [Permission] {
    use Permission::*;
    match role {
        Role::Admin => &[
            ReadProfiles,
            FindByName,
            FindByContact,
            FindByExternalId,
            ListDeletedProfiles,
            WriteProfiles,
            ReadConsents,
            WriteConsents,
            WatchChanges,
            ManageTenant,
            ReadAudit,
            MergeProfiles,
        ],
        Role::Agent | Role::Service => &[
            ReadProfiles,
            FindByName,
            FindByContact,
            FindByExternalId,
            WriteProfiles,
            ReadConsents,
            WriteConsents,
            WatchChanges,
        ],
        Role::Steward => &[
            ReadProfiles,
            FindByName,
            FindByContact,
            FindByExternalId,
            ListDeletedProfiles,
            ReadConsents,
            WatchChanges,
            MergeProfiles,
        ],
        Role::Marketer => &[ReadProfiles, FindByName, ReadConsents, WatchChanges],
        // No tenant administration and no audit reading: those are people's decisions.
        Role::System => &[
            ReadProfiles,
            FindByName,
            FindByContact,
            FindByExternalId,
            ListDeletedProfiles,
            WriteProfiles,
            ReadConsents,
            WriteConsents,
            WatchChanges,
            MergeProfiles,
        ],
        Role::Analyst => &[ReadProfiles, ReadConsents, WatchChanges],
    }
}

/// The roles that may call `rpc`; `None` for an RPC the table does not name.
pub fn roles_for(rpc: &str) -> Option<Vec<Role>> {
    let (_, needed) = RPCS.iter().find(|(name, _)| *name == rpc)?;
    Some(Role::ALL.into_iter().filter(|role| role.permissions().contains(needed)).collect())
}
