//! Verifies the OIDC token Pub/Sub push attaches to each request
//! (`Authorization: Bearer <JWT>`) with the shared JWKS verifier
//! ([`crate::auth::jwks`]): RS256 only, a key of the configured JWKS file
//! (Google's `https://www.googleapis.com/oauth2/v3/certs`, copied to a file
//! the operator refreshes; re-read when it changes), issuer
//! `https://accounts.google.com` (or `accounts.google.com`), the configured
//! audience, `exp`/`nbf` (30 s leeway), then the configured push service
//! account in `email` with `email_verified: true`.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::auth::jwks::{Expect, JwksError, JwksFile, JwtError};

/// Issuers of Google-signed ID tokens.
pub const GOOGLE_ISSUERS: &[&str] = &["https://accounts.google.com", "accounts.google.com"];

/// What the push's token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub jwks_file: PathBuf,
    /// The push subscription's `audience`.
    pub audience: String,
    /// The push subscription's service account (`…@….iam.gserviceaccount.com`).
    pub email: String,
}

/// Why a push was refused (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("no bearer token")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(JwtError),
    #[error("token's email is not the configured push service account, or not verified")]
    WrongEmail,
}

impl OidcError {
    /// Short reason label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            OidcError::Missing => "unauthenticated",
            OidcError::Invalid(JwtError::UnknownKey(_) | JwtError::Signature) => "unknown_key",
            OidcError::Invalid(JwtError::Expired | JwtError::NotYetValid) => "expired",
            OidcError::Invalid(JwtError::Audience | JwtError::Issuer) => "wrong_audience_or_issuer",
            OidcError::Invalid(_) => "invalid_token",
            OidcError::WrongEmail => "wrong_email",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

/// Checks push tokens against the configured keys and claims.
#[derive(Debug)]
pub struct OidcVerifier {
    email: String,
    expect: Expect,
    keys: Arc<JwksFile>,
}

impl OidcVerifier {
    /// Reads the JWKS file (it must hold at least one usable key).
    pub fn new(cfg: OidcConfig) -> Result<Self, JwksError> {
        let keys = JwksFile::open(&cfg.jwks_file)?;
        let mut expect = Expect::new(
            GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            vec![cfg.audience],
        );
        expect.algorithms = vec![Algorithm::RS256];
        Ok(Self {
            email: cfg.email,
            expect,
            keys,
        })
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<(), OidcError> {
        let v = authorization.ok_or(OidcError::Missing)?;
        let (scheme, token) = v.trim().split_once(' ').ok_or(OidcError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(OidcError::Missing);
        }
        self.verify(token.trim())
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<(), OidcError> {
        let c: Claims = self
            .keys
            .verify(token, &self.expect)
            .map_err(OidcError::Invalid)?;
        if c.email.as_deref() != Some(self.email.as_str()) || c.email_verified != Some(true) {
            return Err(OidcError::WrongEmail);
        }
        Ok(())
    }
}
