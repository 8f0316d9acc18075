//! Typed ids, parsed once at the edge.

use std::fmt;

use uuid::Uuid;

/// Longest client request id (SetConsent, CreateProfile, UpdateProfile).
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// A client request id: empty for none, else 1 to [`MAX_REQUEST_ID_CHARS`]
/// visible ASCII characters (it is stored and compared as sent).
pub fn request_id(raw: &str) -> Result<Option<&str>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(format!("at most {MAX_REQUEST_ID_CHARS} characters"));
    }
    if !raw.chars().all(|c| c.is_ascii_graphic()) {
        return Err("may hold only visible ASCII characters".into());
    }
    Ok(Some(raw))
}

/// A tenant: the unit of data isolation. Comes from the caller's token only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Longest accepted tenant id.
    pub const MAX_LEN: usize = 64;

    /// Accepts 1–64 characters of ASCII letters, digits, `-`, `_` and `.`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("must be 1 to {} characters", Self::MAX_LEN));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err("may hold only ASCII letters, digits, '-', '_' and '.'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A profile id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileId(Uuid);

impl ProfileId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the hyphenated (or simple) UUID text form.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("required".into());
        }
        Uuid::try_parse(raw).map(Self).map_err(|_| format!("'{}' is not a UUID", truncate(raw)))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for ProfileId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl From<ProfileId> for Uuid {
    fn from(value: ProfileId) -> Self {
        value.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Echoes at most 64 characters of bad input back in an error.
pub(crate) fn truncate(raw: &str) -> String {
    match raw.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &raw[..end]),
        None => raw.to_owned(),
    }
}
