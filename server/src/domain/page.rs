//! Opaque page tokens for list and search calls.
//!
//! A token carries the last id of the page and a MAC binding it to the
//! tenant and query it belongs to (see [`PageTokens`]), so a token reused
//! with another query is refused rather than silently skipping rows. Pages are keyset-based (`id > last`): ids are UUID
//! v7, so rows inserted while a caller pages appear after the pages already
//! read and no row is seen twice.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{DomainError, TenantId};

/// Page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page served.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Signs and checks page tokens with the deployment's key: a token is the
/// last id of its page and an HMAC over the tenant, the query and that id.
/// It says nothing about the query (a searched name stays out of logs and
/// URLs), and a token altered, made up, or used with another query or
/// tenant is refused. Every instance of a deployment shares the key.
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

/// Bytes of the MAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;

impl PageTokens {
    /// Tokens under `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: Arc::from(key) }
    }

    /// Validates `page_size` and `page_token` for `query` in `tenant`.
    pub fn request(
        &self,
        page_size: i32,
        page_token: &str,
        tenant: &TenantId,
        query: String,
    ) -> Result<PageRequest, DomainError> {
        let KeyedPageRequest { size, after, bound, tokens } =
            self.request_keyed::<16>(page_size, page_token, tenant, query)?;
        Ok(PageRequest { size, after: after.map(Uuid::from_bytes), bound, tokens })
    }

    /// Validates `page_size` and `page_token` for `query` in `tenant`, for
    /// a keyset of `N` bytes (a list ordered by something else than id: a
    /// score and the ids that break its ties).
    pub fn request_keyed<const N: usize>(
        &self,
        page_size: i32,
        page_token: &str,
        tenant: &TenantId,
        query: String,
    ) -> Result<KeyedPageRequest<N>, DomainError> {
        let size = page_size_of(page_size)?;
        let bound = format!("{tenant}\u{0}{query}");
        let after = if page_token.is_empty() { None } else { Some(self.open_bytes::<N>(page_token, &bound)?) };
        Ok(KeyedPageRequest { size, after, bound, tokens: self.clone() })
    }

    fn mac(&self, bound: &str, last: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(bound.as_bytes());
        mac.update(&[0]);
        mac.update(last);
        mac
    }

    fn seal(&self, bound: &str, last: &[u8]) -> String {
        let tag = self.mac(bound, last).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(last.len() + MAC_BYTES);
        bytes.extend_from_slice(last);
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn open_bytes<const N: usize>(&self, token: &str, bound: &str) -> Result<[u8; N], DomainError> {
        let invalid = || DomainError::invalid("page_token", "not a page token of this query");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != N + MAC_BYTES {
            return Err(invalid());
        }
        self.mac(bound, &bytes[..N]).verify_truncated_left(&bytes[N..]).map_err(|_| invalid())?;
        let mut last = [0; N];
        last.copy_from_slice(&bytes[..N]);
        Ok(last)
    }
}

fn page_size_of(page_size: i32) -> Result<u64, DomainError> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(DomainError::invalid("page_size", "must not be negative")),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// A validated page request over a keyset of `N` bytes.
#[derive(Debug, Clone)]
pub struct KeyedPageRequest<const N: usize> {
    /// Rows to return.
    pub size: u64,
    /// Start after this key.
    pub after: Option<[u8; N]>,
    /// Tenant and query the tokens are bound to.
    bound: String,
    tokens: PageTokens,
}

impl<const N: usize> KeyedPageRequest<N> {
    /// The token for the page after one that ended at `last`.
    pub fn next_token(&self, last: [u8; N]) -> String {
        self.tokens.seal(&self.bound, &last)
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Rows to return.
    pub size: u64,
    /// Start after this id (a profile's, a consent decision's, an audit record's).
    pub after: Option<Uuid>,
    /// Tenant and query the tokens are bound to.
    bound: String,
    tokens: PageTokens,
}

impl PageRequest {
    /// The token for the page after one that ended at `last`.
    pub fn next_token(&self, last: impl Into<Uuid>) -> String {
        self.tokens.seal(&self.bound, last.into().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_their_tenant_and_query() {
        let tokens = PageTokens::new(b"a deployment's key");
        let (acme, globex) = (TenantId::parse("acme").expect("tenant"), TenantId::parse("globex").expect("tenant"));
        let page = tokens.request(10, "", &acme, "list".into()).expect("first page");
        let last = crate::domain::ProfileId::generate();
        let token = page.next_token(last.as_uuid());
        let next = tokens.request(10, &token, &acme, "list".into()).expect("next page");
        assert_eq!(next.after, Some(last.as_uuid()));
        assert!(tokens.request(10, &token, &acme, "name:ada".into()).is_err(), "another query");
        assert!(tokens.request(10, &token, &globex, "list".into()).is_err(), "another tenant");
        assert!(PageTokens::new(b"another deployment").request(10, &token, &acme, "list".into()).is_err());
        let mut forged = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        forged[3] ^= 1;
        assert!(tokens.request(10, &URL_SAFE_NO_PAD.encode(forged), &acme, "list".into()).is_err(), "altered id");
        assert!(tokens.request(10, "garbage!", &acme, "list".into()).is_err());
        assert!(tokens.request(-1, "", &acme, "list".into()).is_err());
        assert_eq!(tokens.request(5000, "", &acme, "list".into()).map(|p| p.size).ok(), Some(MAX_PAGE_SIZE));
    }
}
