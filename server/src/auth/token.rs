//! JWT bearer tokens: verification (HS256, RS256, ES256) and minting for
//! local use.
//!
//! Keys come from configuration: a secret, a public key, or a JWKS file whose
//! keys tokens choose by `kid`; a file source is read again on reload
//! (SIGHUP, or when it changes), so keys rotate without a restart. In the
//! embedded mode with none configured, a random HS256 secret is generated
//! once and kept in the data directory, so there is never an unauthenticated
//! mode and `c360 token` can mint tokens the server accepts.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
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
    /// An HS256 shared secret (from the environment).
    Secret(SecretString),
    /// A file holding an HS256 shared secret (re-read on reload).
    SecretFile(PathBuf),
    /// A PEM public key file (RSA → RS256, EC P-256 → ES256).
    PublicKeyFile(PathBuf),
    /// A JWKS file (RFC 7517): several keys, chosen by a token's `kid`.
    Jwks(PathBuf),
    /// The generated secret in this data directory (created when missing).
    LocalSecret(PathBuf),
}

impl KeySource {
    /// The file a reload reads again, if the keys come from one an operator
    /// may replace.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::SecretFile(path) | Self::PublicKeyFile(path) | Self::Jwks(path) => Some(path),
            Self::Secret(_) | Self::LocalSecret(_) => None,
        }
    }
}

/// Tokens remembered as verified.
const VERIFIED_CAPACITY: u64 = 10_000;
/// Longest a verified token is remembered (its expiry still applies).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// One verification key with the rules for tokens it signs.
struct Key {
    decoding: DecodingKey,
    /// One algorithm only: a token signed with another (`none`, or HS256
    /// with a public key as its secret) fails before its signature is read.
    validation: Validation,
}

/// The keys loaded from one reading of the source.
struct KeySet {
    /// Keys by `kid` (a JWKS).
    named: HashMap<String, Key>,
    /// The key of a source without key ids.
    unnamed: Option<Key>,
    /// Minting key, with an HS256 secret.
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
    /// What was read, to tell a changed file from an unchanged one.
    fingerprint: Vec<u8>,
}

/// Keys and rules for verifying tokens, and minting them when a secret is known.
pub struct JwtKeys {
    /// Tokens verified recently, with their expiry: a client sends the same
    /// token on every call, and checking its signature and parsing its claims
    /// each time was a visible share of a cached read's CPU. Emptied when the
    /// keys change, so a withdrawn key's tokens stop at once.
    verified: moka::sync::Cache<String, (Caller, u64, u64)>,
    /// Bumped by every reload that changed the keys; a remembered token
    /// counts only under the generation it was verified in (a verification
    /// racing a reload must not outlive it).
    generation: AtomicU64,
    source: KeySource,
    keys: RwLock<Arc<KeySet>>,
    issuer: String,
    audience: String,
    /// Longest accepted lifetime (`exp - iat`), in seconds.
    max_lifetime: u64,
}

/// Longest token lifetime accepted unless configured otherwise.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY: u64 = 30;

impl Key {
    fn new(decoding: DecodingKey, algorithm: Algorithm, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        Self { decoding, validation }
    }
}

/// The algorithm a JWK verifies: its `alg`, else what its key type implies.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> anyhow::Result<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    if let Some(alg) = jwk.common.key_algorithm {
        return alg.to_string().parse().map_err(|_| anyhow::anyhow!("algorithm {alg} cannot verify tokens"));
    }
    Ok(match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => Algorithm::ES384,
        AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => anyhow::bail!("unsupported key type"),
    })
}

impl KeySet {
    fn load(source: &KeySource, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let secret = |secret: &[u8], fingerprint: Vec<u8>| -> anyhow::Result<Self> {
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
            );
            Ok(Self {
                named: HashMap::new(),
                unnamed: Some(Key::new(DecodingKey::from_secret(secret), Algorithm::HS256, issuer, audience)),
                encoding: Some(EncodingKey::from_secret(secret)),
                algorithm: Algorithm::HS256,
                fingerprint,
            })
        };
        use crate::files::read;
        match source {
            KeySource::Secret(value) => secret(value.expose_secret().as_bytes(), Vec::new()),
            KeySource::LocalSecret(dir) => {
                let value = local_secret(dir)?;
                secret(value.expose_secret().as_bytes(), Vec::new())
            }
            KeySource::SecretFile(path) => {
                let value = crate::files::read_secret(path, "JWT secret file")?;
                secret(value.as_bytes(), value.as_bytes().to_vec())
            }
            KeySource::PublicKeyFile(path) => {
                let pem = read(path, "JWT public key")?;
                let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, Algorithm::ES256)
                } else {
                    anyhow::bail!("{} is neither an RSA nor an EC public key in PEM", path.display());
                };
                Ok(Self {
                    named: HashMap::new(),
                    unnamed: Some(Key::new(key, algorithm, issuer, audience)),
                    encoding: None,
                    algorithm,
                    fingerprint: pem,
                })
            }
            KeySource::Jwks(path) => {
                let raw = read(path, "JWKS file")?;
                let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&raw)
                    .map_err(|e| anyhow::anyhow!("{} is not a JWKS document: {e}", path.display()))?;
                let mut named = HashMap::new();
                for (i, jwk) in set.keys.iter().enumerate() {
                    let kid = jwk.common.key_id.clone().filter(|kid| !kid.is_empty()).ok_or_else(|| {
                        anyhow::anyhow!("key {i} of {} has no kid: tokens choose keys by kid", path.display())
                    })?;
                    if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                        anyhow::bail!("key '{kid}' is for encryption (use: enc), not for signatures");
                    }
                    // A shared secret in the set makes the file a secret.
                    if let jsonwebtoken::jwk::AlgorithmParameters::OctetKey(oct) = &jwk.algorithm {
                        let bytes = URL_SAFE_NO_PAD.decode(oct.value.trim_end_matches('=')).unwrap_or_default();
                        anyhow::ensure!(
                            bytes.len() >= MIN_SECRET_BYTES,
                            "key '{kid}' is a secret of {} bytes; at least {MIN_SECRET_BYTES} are needed",
                            bytes.len()
                        );
                        crate::files::check_private(path)?;
                    }
                    let algorithm = jwk_algorithm(jwk).map_err(|e| anyhow::anyhow!("key '{kid}': {e}"))?;
                    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| anyhow::anyhow!("key '{kid}': {e}"))?;
                    if named.insert(kid.clone(), Key::new(decoding, algorithm, issuer, audience)).is_some() {
                        anyhow::bail!("kid '{kid}' appears twice in {}", path.display());
                    }
                }
                anyhow::ensure!(!named.is_empty(), "{} holds no key", path.display());
                Ok(Self { named, unnamed: None, encoding: None, algorithm: Algorithm::RS256, fingerprint: raw })
            }
        }
    }

    /// The key that verifies `token`: by its `kid` in a JWKS (required), the
    /// one key otherwise.
    fn key_for(&self, token: &str) -> Result<&Key, TokenError> {
        if let Some(key) = &self.unnamed {
            return Ok(key);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no kid in the token's header".to_owned()))?;
        self.named.get(&kid).ok_or_else(|| TokenError::Invalid(format!("unknown kid '{kid}'")))
    }
}

impl JwtKeys {
    /// Loads the key from `source`; tokens must carry `issuer` and `audience`.
    pub fn load(source: &KeySource, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let keys = KeySet::load(source, issuer, audience)?;
        let verified = moka::sync::Cache::builder().max_capacity(VERIFIED_CAPACITY).time_to_live(VERIFIED_TTL).build();
        Ok(Self {
            verified,
            generation: AtomicU64::new(0),
            source: source.clone(),
            keys: RwLock::new(Arc::new(keys)),
            issuer: issuer.to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME.as_secs(),
            audience: audience.to_owned(),
        })
    }

    /// Reads the key source again. When it changed, the new keys replace the
    /// old ones and every remembered token is forgotten (a token of a
    /// withdrawn key stops working at once). A source that no longer loads
    /// keeps the old keys and reports why. `true` when the keys changed.
    pub fn reload(&self) -> anyhow::Result<bool> {
        if self.source.file().is_none() {
            return Ok(false);
        }
        let fresh = KeySet::load(&self.source, &self.issuer, &self.audience)?;
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.fingerprint == fresh.fingerprint {
            return Ok(false);
        }
        *keys = Arc::new(fresh);
        drop(keys);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.verified.invalidate_all();
        Ok(true)
    }

    /// The key source (for a reloader to watch its file).
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Verifies a bearer token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(u64::MAX, |d| d.as_secs());
        // The generation is read before the keys: keys replaced after this
        // read leave whatever is remembered below under an old generation.
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((caller, exp, remembered_in)) = self.verified.get(token)
            && remembered_in == generation
            && unexpired(exp, now, LEEWAY)
        {
            return Ok(caller);
        }
        let keys = self.current();
        let key = keys.key_for(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        // A stolen token is useful for as long as it lives: refuse long-lived
        // ones. `iat` is the issuer's word, so a token dated in the future
        // is refused, and what is left of its life is bounded as well.
        if claims.iat > now.saturating_add(LEEWAY) {
            return Err(TokenError::Invalid(format!("iat {} is in the future", claims.iat)));
        }
        // What is left is measured on this server's clock: the issuer's may
        // be ahead by the leeway.
        let lifetime = claims.exp.saturating_sub(claims.iat).max(claims.exp.saturating_sub(now + LEEWAY));
        if lifetime > self.max_lifetime {
            return Err(TokenError::Invalid(format!(
                "lifetime {lifetime}s exceeds the {}s this server accepts",
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
        self.verified.insert(token.to_owned(), (caller.clone(), claims.exp, generation));
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
        let keys = self.current();
        let Some(key) = &keys.encoding else {
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
        Ok(jsonwebtoken::encode(&Header::new(keys.algorithm), &claims, key)?)
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
        // Found in review: `iat` is the issuer's claim, and dating a token in
        // the future hid a week-long life behind an hour's `exp - iat`.
        let week = 7 * 24 * 3600;
        assert!(keys.verify(&sign(claims(now + week - 3600, now + week))).is_err(), "iat in the future");
        assert!(keys.verify(&sign(claims(now + 10, now + 3000))).is_ok(), "a clock a little ahead is allowed");
        assert!(keys.verify(&sign(claims(now + 10, now + 10 + 3600))).is_ok(), "the longest life, from a clock ahead");
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
