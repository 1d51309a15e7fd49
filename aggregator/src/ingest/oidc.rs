//! Verifies the OIDC token Pub/Sub push attaches to each request
//! (`Authorization: Bearer <JWT>`): RS256 only, signed by a key of the
//! configured JWKS file (Google's `https://www.googleapis.com/oauth2/v3/certs`,
//! copied to a file the operator refreshes; the file is re-read when it
//! changes), issuer `https://accounts.google.com` (or `accounts.google.com`),
//! the configured audience, not expired (60 s leeway), and the configured
//! push service account in `email` with `email_verified: true`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Issuers of Google-signed ID tokens.
pub const GOOGLE_ISSUERS: &[&str] = &["https://accounts.google.com", "accounts.google.com"];
/// Largest JWKS file read.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// Largest token looked at.
const MAX_TOKEN_BYTES: usize = 16 << 10;

/// What the push's token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub jwks_file: PathBuf,
    /// The push subscription's `audience`.
    pub audience: String,
    /// The push subscription's service account (`…@….iam.gserviceaccount.com`).
    pub email: String,
}

/// Why a token was refused (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("no bearer token")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(String),
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token's email is not the configured push service account, or not verified")]
    WrongEmail,
    #[error("JWKS file {path}: {why}")]
    Keys { path: PathBuf, why: String },
}

impl OidcError {
    /// Short reason label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            OidcError::Missing => "unauthenticated",
            OidcError::Invalid(_) => "invalid_token",
            OidcError::UnknownKey => "unknown_key",
            OidcError::WrongEmail => "wrong_email",
            OidcError::Keys { .. } => "jwks_unavailable",
        }
    }
}

struct Loaded {
    modified: Option<SystemTime>,
    keys: JwkSet,
}

/// Checks push tokens against the configured keys and claims.
pub struct OidcVerifier {
    cfg: OidcConfig,
    keys: Mutex<Loaded>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("cfg", &self.cfg)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

fn load(path: &Path) -> Result<Loaded, OidcError> {
    let err = |why: String| OidcError::Keys {
        path: path.to_path_buf(),
        why,
    };
    let md = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if md.len() > MAX_JWKS_BYTES {
        return Err(err(format!("larger than {MAX_JWKS_BYTES} bytes")));
    }
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let keys: JwkSet =
        serde_json::from_slice(&text).map_err(|e| err(format!("not a JWKS: {e}")))?;
    if keys.keys.is_empty() {
        return Err(err("holds no key".to_owned()));
    }
    Ok(Loaded {
        modified: md.modified().ok(),
        keys,
    })
}

impl OidcVerifier {
    /// Reads the JWKS file (it must hold at least one key).
    pub fn new(cfg: OidcConfig) -> Result<Self, OidcError> {
        let keys = load(&cfg.jwks_file)?;
        Ok(Self {
            cfg,
            keys: Mutex::new(keys),
        })
    }

    /// The key with this `kid`, re-reading the file if it changed.
    fn key(&self, kid: &str) -> Result<DecodingKey, OidcError> {
        let mut g = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::fs::metadata(&self.cfg.jwks_file)
            .ok()
            .and_then(|m| m.modified().ok());
        if now.is_some() && now != g.modified {
            match load(&self.cfg.jwks_file) {
                Ok(l) => *g = l,
                // Keep the keys we have; say why.
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS file changed but cannot be read; keeping the previous keys")
                }
            }
        }
        let jwk = g.keys.find(kid).ok_or(OidcError::UnknownKey)?;
        DecodingKey::from_jwk(jwk).map_err(|_| OidcError::UnknownKey)
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<(), OidcError> {
        let v = authorization.ok_or(OidcError::Missing)?;
        let (scheme, token) = v.trim().split_once(' ').ok_or(OidcError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(OidcError::Missing);
        }
        self.verify(token.trim())
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<(), OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Invalid("too long".to_owned()));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(OidcError::Invalid(format!(
                "algorithm {:?} (only RS256)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Invalid("no kid".to_owned()))?;
        let key = self.key(&kid)?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(GOOGLE_ISSUERS);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 60;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let c = data.claims;
        if c.email.as_deref() != Some(self.cfg.email.as_str()) || c.email_verified != Some(true) {
            return Err(OidcError::WrongEmail);
        }
        Ok(())
    }
}
