//! JWT bearer tokens: verification (HS256, RS256, ES256) and minting for
//! local use.
//!
//! Keys come from configuration; with none configured a random HS256 secret is
//! generated once and kept in the data directory, so there is never an
//! unauthenticated mode and `c360 token` can mint tokens the server accepts.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Caller, Role};
use crate::domain::TenantId;

/// Longest `sub` claim accepted (the audit trail's subject column).
pub const MAX_SUBJECT_CHARS: usize = 255;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// File name of the generated local secret inside the data directory.
pub const LOCAL_SECRET_FILE: &str = "jwt-secret";

/// Claims c360 reads from (and writes into) a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who is calling.
    pub sub: String,
    /// Tenant the caller belongs to.
    pub tenant: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
}

/// Why a token was refused: all of these answer UNAUTHENTICATED.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No `authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// Signature, algorithm, expiry, issuer, audience or shape is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Where the verification key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An HS256 shared secret.
    Secret(SecretString),
    /// A PEM public key file (RSA → RS256, EC P-256 → ES256).
    PublicKeyFile(PathBuf),
    /// The generated secret in this data directory (created when missing).
    LocalSecret(PathBuf),
}

/// Tokens remembered as verified.
const VERIFIED_CAPACITY: u64 = 10_000;
/// Longest a verified token is remembered (its expiry still applies).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Keys and rules for verifying tokens, and minting them when a secret is known.
pub struct JwtKeys {
    /// Tokens verified recently, with their expiry: a client sends the same
    /// token on every call, and checking its signature and parsing its claims
    /// each time was a visible share of a cached read's CPU.
    verified: moka::sync::Cache<String, (Caller, u64)>,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
    issuer: String,
    audience: String,
    /// Longest accepted lifetime (`exp - iat`), in seconds.
    max_lifetime: u64,
}

/// Longest token lifetime accepted unless configured otherwise.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl JwtKeys {
    /// Loads the key from `source`; tokens must carry `issuer` and `audience`.
    pub fn load(source: &KeySource, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let (decoding, encoding, algorithm) = match source {
            KeySource::Secret(secret) => {
                let secret = secret.expose_secret().as_bytes();
                anyhow::ensure!(
                    secret.len() >= MIN_SECRET_BYTES,
                    "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
                );
                (DecodingKey::from_secret(secret), Some(EncodingKey::from_secret(secret)), Algorithm::HS256)
            }
            KeySource::LocalSecret(dir) => {
                let secret = local_secret(dir)?;
                let bytes = secret.expose_secret().as_bytes();
                (DecodingKey::from_secret(bytes), Some(EncodingKey::from_secret(bytes)), Algorithm::HS256)
            }
            KeySource::PublicKeyFile(path) => {
                let pem = fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read JWT public key {}: {e}", path.display()))?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, None, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, None, Algorithm::ES256)
                } else {
                    anyhow::bail!("{} is neither an RSA nor an EC public key in PEM", path.display());
                }
            }
        };
        // One algorithm only: a token signed with another (`none`, or HS256
        // with a public key as its secret) fails before its signature is read.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let verified = moka::sync::Cache::builder().max_capacity(VERIFIED_CAPACITY).time_to_live(VERIFIED_TTL).build();
        Ok(Self {
            verified,
            decoding,
            encoding,
            validation,
            algorithm,
            issuer: issuer.to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME.as_secs(),
            audience: audience.to_owned(),
        })
    }

    /// Verifies a bearer token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(u64::MAX, |d| d.as_secs());
        if let Some((caller, exp)) = self.verified.get(token)
            && unexpired(exp, now, self.validation.leeway)
        {
            return Ok(caller);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        // A stolen token is useful for as long as it lives: refuse long-lived ones.
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(TokenError::Invalid(format!(
                "lifetime {}s exceeds the {}s this server accepts",
                claims.exp.saturating_sub(claims.iat),
                self.max_lifetime
            )));
        }
        let tenant = TenantId::parse(&claims.tenant).map_err(|e| TokenError::Invalid(format!("tenant claim {e}")))?;
        // The subject is written into every audit record: it must fit there.
        if claims.sub.is_empty()
            || claims.sub.chars().count() > MAX_SUBJECT_CHARS
            || claims.sub.chars().any(char::is_control)
        {
            return Err(TokenError::Invalid(format!(
                "sub claim must be 1 to {MAX_SUBJECT_CHARS} characters without control characters"
            )));
        }
        let roles = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        let caller =
            Caller { subject: claims.sub, tenant, roles, expires_at: claims.exp, request_id: Default::default() };
        self.verified.insert(token.to_owned(), (caller.clone(), claims.exp));
        Ok(caller)
    }

    /// Accepts tokens living at most `lifetime` (`exp - iat`).
    pub fn with_max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime.as_secs();
        self
    }

    /// Longest token lifetime accepted.
    pub fn max_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_lifetime)
    }

    /// Mints a token for local use; only possible with an HS256 secret.
    pub fn mint(&self, subject: &str, tenant: &TenantId, roles: &[Role], ttl: Duration) -> anyhow::Result<String> {
        let Some(key) = &self.encoding else {
            anyhow::bail!("tokens can be minted only with an HS256 secret; this server verifies with a public key");
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            tenant: tenant.as_str().to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs(),
            iat: now,
        };
        Ok(jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)?)
    }
}

/// Whether a token expiring at `exp` is still accepted at `now`, as
/// jsonwebtoken judges it (both in Unix seconds, with `leeway`).
fn unexpired(exp: u64, now: u64, leeway: u64) -> bool {
    now <= exp.saturating_add(leeway)
}

/// Reads the generated secret from `dir`, creating it (mode 0600, in a
/// private directory) when missing. Written whole or not at all, and checked
/// on every read: two commands started at once on a fresh data directory
/// must never read a half-written (or empty) secret, which would accept
/// tokens signed with it.
fn local_secret(dir: &Path) -> anyhow::Result<SecretString> {
    let path = dir.join(LOCAL_SECRET_FILE);
    if !path.exists() {
        crate::files::private_dir(dir)?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        crate::files::create_once(&path, URL_SAFE_NO_PAD.encode(bytes).as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    crate::files::check_private(&path)?;
    let secret = fs::read_to_string(&path)?.trim().to_owned();
    anyhow::ensure!(secret.len() >= MIN_SECRET_BYTES, "{} is too short; delete it to regenerate", path.display());
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef".to_owned());
        JwtKeys::load(&KeySource::Secret(secret), "c360", "c360").expect("keys")
    }

    #[test]
    fn a_remembered_token_is_honoured_only_until_it_expires() {
        assert!(unexpired(1_000, 1_000, 0));
        assert!(unexpired(1_000, 1_030, 30), "the leeway jsonwebtoken allows");
        assert!(!unexpired(1_000, 1_031, 30));
    }

    #[test]
    fn verifying_again_gives_the_same_caller_and_a_refused_token_stays_refused() {
        let keys = keys();
        let tenant = TenantId::parse("acme").expect("tenant");
        let token = keys.mint("ada", &tenant, &[Role::Agent], Duration::from_secs(60)).expect("token");
        let first = keys.verify(&token).expect("valid");
        assert_eq!(keys.verify(&token).expect("remembered"), first);
        let tampered = format!("{token}x");
        for _ in 0..2 {
            assert!(matches!(keys.verify(&tampered), Err(TokenError::Invalid(_))));
        }
    }

    #[test]
    fn commands_started_at_once_on_a_fresh_data_dir_share_one_whole_secret() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("fresh");
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| local_secret(&data))).collect();
            handles.into_iter().map(|h| h.join().expect("thread").expect("secret").expose_secret().to_owned()).collect()
        });
        assert!(secrets.iter().all(|s| s == &secrets[0] && s.len() >= MIN_SECRET_BYTES), "{}", secrets.len());
    }

    #[test]
    fn tokens_not_yet_valid_or_living_too_long_are_refused() {
        let keys = keys().with_max_lifetime(Duration::from_secs(3600));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("now").as_secs();
        let sign = |claims: serde_json::Value| {
            let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
        };
        let claims = |iat: u64, exp: u64| {
            serde_json::json!({"sub": "ada", "tenant": "acme", "roles": ["agent"], "iss": "c360", "aud": "c360",
                "iat": iat, "exp": exp})
        };
        assert!(keys.verify(&sign(claims(now, now + 3600))).is_ok(), "an hour is allowed");
        assert!(keys.verify(&sign(claims(now, now + 3601))).is_err(), "a second more is not");
        let mut early = claims(now, now + 600);
        early["nbf"] = serde_json::json!(now + 300);
        assert!(keys.verify(&sign(early)).is_err(), "not valid before nbf");
        let mut started = claims(now, now + 600);
        started["nbf"] = serde_json::json!(now - 10);
        assert!(keys.verify(&sign(started)).is_ok());
    }

    #[test]
    fn a_subject_must_fit_the_audit_trail() {
        let keys = keys();
        let tenant = TenantId::parse("acme").expect("tenant");
        let ttl = Duration::from_secs(60);
        for bad in ["x".repeat(MAX_SUBJECT_CHARS + 1), "ada\u{0}".to_owned(), "line\nbreak".to_owned()] {
            let token = keys.mint(&bad, &tenant, &[Role::Agent], ttl).expect("token");
            assert!(matches!(keys.verify(&token), Err(TokenError::Invalid(_))), "{bad:?}");
        }
        let longest = keys.mint(&"é".repeat(MAX_SUBJECT_CHARS), &tenant, &[Role::Agent], ttl).expect("token");
        assert!(keys.verify(&longest).is_ok());
    }
}
