//! Opaque page tokens for list and search calls.
//!
//! A token carries the last id of the page and a fingerprint of the query it
//! belongs to, so a token reused with another query is refused rather than
//! silently skipping rows. Pages are keyset-based (`id > last`): ids are UUID
//! v7, so rows inserted while a caller pages appear after the pages already
//! read and no row is seen twice.

use std::fmt::Display;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::DomainError;

/// Page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page served.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows to return.
    pub size: u64,
    /// Start after this id (a profile's, or a consent decision's).
    pub after: Option<Uuid>,
    /// The query fingerprint tokens are bound to.
    pub fingerprint: String,
}

impl PageRequest {
    /// Validates `page_size` and `page_token` for the query named by `fingerprint`.
    pub fn parse(page_size: i32, page_token: &str, fingerprint: String) -> Result<Self, DomainError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(DomainError::invalid("page_size", "must not be negative")),
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() { None } else { Some(decode(page_token, &fingerprint)?) };
        Ok(Self { size, after, fingerprint })
    }

    /// The token for the page after one that ended at `last`.
    pub fn next_token(&self, last: impl Display) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}\n{}", self.fingerprint, last))
    }
}

fn decode(token: &str, fingerprint: &str) -> Result<Uuid, DomainError> {
    let invalid = |why: &str| DomainError::invalid("page_token", why);
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid("not a page token of this service"))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not a page token of this service"))?;
    let (bound_to, last) = text.rsplit_once('\n').ok_or_else(|| invalid("not a page token of this service"))?;
    if bound_to != fingerprint {
        return Err(invalid("belongs to a different query"));
    }
    Uuid::try_parse(last).map_err(|_| invalid("not a page token of this service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_their_query() {
        let page = PageRequest::parse(10, "", "list".into()).expect("first page");
        let last = crate::domain::ProfileId::generate();
        let token = page.next_token(last);
        assert_eq!(PageRequest::parse(10, &token, "list".into()).ok().and_then(|p| p.after), Some(last.as_uuid()));
        assert!(PageRequest::parse(10, &token, "name:ada".into()).is_err());
        assert!(PageRequest::parse(10, "garbage!", "list".into()).is_err());
        assert!(PageRequest::parse(-1, "", "list".into()).is_err());
        assert_eq!(PageRequest::parse(5000, "", "list".into()).map(|p| p.size).ok(), Some(MAX_PAGE_SIZE));
    }
}
