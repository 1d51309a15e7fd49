//! Generic JWT verification against a JSON Web Key Set (RFC 7517/7519).
//!
//! Used for the agents' projected ServiceAccount tokens (keys: the cluster's
//! service-account issuer, `kubectl get --raw /openid/v1/jwks`) and for any
//! other signed bearer token whose issuer publishes a JWKS (e.g. Pub/Sub push
//! OIDC tokens). Verification is done by the `jsonwebtoken` crate; this module
//! adds what a verifier must decide for itself:
//!
//! - the algorithm comes from the configured allow-list, never from the token
//!   alone: the header's `alg` must be allowed *and* match the chosen key's
//!   type (no RSA/HMAC confusion; `none` and HMAC are never accepted, as a
//!   JWKS holds public keys);
//! - the key is chosen by the header's `kid`; without `kid`, each key of the
//!   algorithm's family is tried (at most [`MAX_KEYS`] keys are loaded);
//! - issuer and audience are required and exact; `exp` is required, `nbf`
//!   checked, a small clock `leeway`; optionally a longest lifetime
//!   (`exp - iat`) so a token minted for a year is refused;
//! - bounded input: tokens over [`MAX_TOKEN_BYTES`], key sets over
//!   [`MAX_JWKS_BYTES`] are refused before parsing;
//! - errors name what was wrong, never the token.
//!
//! A [`JwksFile`] re-reads its file when it changes (checked at most every
//! [`RELOAD_CHECK`]); a file that no longer parses keeps the previous keys,
//! is logged once per change and counted ([`JwksFile::reload_failures`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

/// Longest token accepted (a projected ServiceAccount token is ~1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest key set accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys held from one set.
pub const MAX_KEYS: usize = 64;
/// How often a [`JwksFile`] looks at its file.
pub const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// Why a token was refused. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("no key with kid {0:?} in the key set")]
    UnknownKey(String),
    #[error("the signature does not verify with any key in the key set")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the audience is not one of the expected ones")]
    Audience,
    #[error("the issuer is not the expected one")]
    Issuer,
    #[error("a required claim is missing: {0}")]
    MissingClaim(String),
    #[error("the token lives {lifetime}s, longer than the allowed {max}s")]
    Lifetime { lifetime: u64, max: u64 },
    #[error("the claims do not have the expected shape: {0}")]
    Claims(String),
}

/// Why a key set was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key set is over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the key set is not a JWKS: {0}")]
    Parse(String),
    #[error("the key set holds no usable public key")]
    Empty,
}

/// What a token must say.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Accepted `iss` values (exact; at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one of them must be in the token).
    pub audiences: Vec<String>,
    /// Allowed signing algorithms (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway: u64,
    /// When set, `iat` is required and `exp - iat` may not exceed it.
    pub max_lifetime: Option<Duration>,
}

impl Expect {
    /// RS256 and ES256 (what Kubernetes and Google sign with), 30 s leeway.
    pub fn new(issuers: Vec<String>, audiences: Vec<String>) -> Self {
        Self {
            issuers,
            audiences,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: 30,
            max_lifetime: None,
        }
    }
}

/// One usable public key.
struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Ed),
        HS256 | HS384 | HS512 => None,
    }
}

/// A parsed key set: public keys only.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Arc<Vec<Key>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn key_of(jwk: &Jwk) -> Option<Key> {
    let fam = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(_) => Family::Ec,
        AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
        // Symmetric keys have no place in a public key set.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    if alg.is_some_and(|a| family(a) != Some(fam)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family: fam,
        key,
    })
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`); keys that are not usable
    /// public keys (symmetric, unknown type, encryption-only) are left out.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let set: JwkSet =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Parse(e.to_string()))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter(|k| {
                !matches!(
                    k.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(key_of)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` against these keys and `expect`; its claims.
    pub fn verify<C: DeserializeOwned>(&self, token: &str, expect: &Expect) -> Result<C, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        let alg = header.alg;
        let fam = family(alg)
            .filter(|_| expect.algorithms.contains(&alg))
            .ok_or_else(|| JwtError::Algorithm(format!("{alg:?}")))?;
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => {
                let k: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if k.is_empty() {
                    return Err(JwtError::UnknownKey(kid.chars().take(128).collect()));
                }
                k
            }
            None => self.keys.iter().collect(),
        };
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = expect.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&expect.issuers);
        validation.set_audience(&expect.audiences);
        let mut last = JwtError::Signature;
        for k in candidates
            .into_iter()
            .filter(|k| k.family == fam && k.alg.is_none_or(|a| a == alg))
        {
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &validation) {
                Ok(data) => return check_lifetime(data.claims, expect),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => JwtError::Signature,
                        K::ExpiredSignature => return Err(JwtError::Expired),
                        K::ImmatureSignature => return Err(JwtError::NotYetValid),
                        K::InvalidAudience => return Err(JwtError::Audience),
                        K::InvalidIssuer => return Err(JwtError::Issuer),
                        K::MissingRequiredClaim(c) => {
                            return Err(JwtError::MissingClaim(c.clone()));
                        }
                        K::InvalidAlgorithm => JwtError::Algorithm(format!("{alg:?}")),
                        other => JwtError::Malformed(format!("{other:?}")),
                    };
                }
            }
        }
        Err(last)
    }
}

fn check_lifetime<C: DeserializeOwned>(
    claims: serde_json::Value,
    expect: &Expect,
) -> Result<C, JwtError> {
    if let Some(max) = expect.max_lifetime {
        let iat = claims["iat"]
            .as_u64()
            .ok_or_else(|| JwtError::MissingClaim("iat".into()))?;
        let exp = claims["exp"]
            .as_u64()
            .ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        let lifetime = exp.saturating_sub(iat);
        if lifetime > max.as_secs() {
            return Err(JwtError::Lifetime {
                lifetime,
                max: max.as_secs(),
            });
        }
    }
    serde_json::from_value(claims).map_err(|e| JwtError::Claims(e.to_string()))
}

/// A key set read from a file and re-read when the file changes.
pub struct JwksFile {
    path: PathBuf,
    current: RwLock<Jwks>,
    /// Content fingerprint of the last file looked at, and when.
    seen: Mutex<(Option<[u8; 32]>, Instant)>,
    failures: AtomicU64,
}

impl std::fmt::Debug for JwksFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFile")
            .field("path", &self.path)
            .finish()
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, JwksError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|source| JwksError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut buf = Vec::new();
    f.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| JwksError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    Ok(buf)
}

fn digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

impl JwksFile {
    /// Reads `path` now; an unreadable or empty key set is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<Arc<Self>, JwksError> {
        let path = path.into();
        let bytes = read_limited(&path)?;
        let jwks = Jwks::from_json(&bytes)?;
        Ok(Arc::new(Self {
            path,
            current: RwLock::new(jwks),
            seen: Mutex::new((Some(digest(&bytes)), Instant::now())),
            failures: AtomicU64::new(0),
        }))
    }

    /// The current keys, re-reading the file first when [`RELOAD_CHECK`] has
    /// passed since the last look.
    pub fn keys(&self) -> Jwks {
        self.maybe_reload(RELOAD_CHECK);
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Looks at the file now (tests; or after a known change).
    pub fn reload_now(&self) {
        self.maybe_reload(Duration::ZERO);
    }

    /// Reloads that failed (the previous keys stayed).
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn maybe_reload(&self, every: Duration) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if every > Duration::ZERO && seen.1.elapsed() < every {
            return;
        }
        seen.1 = Instant::now();
        let result = read_limited(&self.path).and_then(|b| {
            let d = digest(&b);
            if seen.0 == Some(d) {
                return Ok(None);
            }
            seen.0 = Some(d);
            Jwks::from_json(&b).map(Some)
        });
        match result {
            Ok(None) => {}
            Ok(Some(jwks)) => {
                tracing::info!(path = %self.path.display(), keys = jwks.len(), "key set reloaded");
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = jwks;
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), error = %e, "key set not reloaded: keeping the previous keys");
            }
        }
    }

    /// Verifies `token` with the current keys.
    pub fn verify<C: DeserializeOwned>(&self, token: &str, expect: &Expect) -> Result<C, JwtError> {
        self.keys().verify(token, expect)
    }
}

/// Seconds since the Unix epoch (for tests and callers building claims).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
