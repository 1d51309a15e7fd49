//! The simulator's token issuer: service-account tokens shaped like the
//! kube-apiserver's (projected, bound to a pod and node; or TokenRequest
//! tokens bound to nothing), and their verification.
//!
//! Tokens are signed ES256 (ECDSA P-256, one of the algorithms the
//! kube-apiserver's `--service-account-signing-key-file` takes) under a
//! per-run key, with a `kid` derived from the public key as the API server
//! does, by `ring`. The claims are the real ones: `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`,
//! `jti`, and `kubernetes.io` with `namespace`, `serviceaccount`, `pod`,
//! `node` and `warnafter`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The issuer every token names.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A name and uid, as in the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8sClaim {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes_io: K8sClaim,
    pub nbf: i64,
    pub sub: String,
}

impl Claims {
    /// `system:serviceaccount:<ns>:<name>`.
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.kubernetes_io.namespace, self.kubernetes_io.serviceaccount.name
        )
    }
}

/// What to mint.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    /// Bound to a pod (and the node it runs on): a projected volume token.
    pub pod: Option<Ref>,
    pub node: Option<Ref>,
    pub lifetime_secs: i64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    NotJwt,
    #[error("signature does not verify")]
    BadSignature,
    #[error("claims: {0}")]
    Claims(String),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
}

/// Mints and verifies tokens.
#[derive(Clone)]
pub struct Issuer {
    /// The private key as PKCS#8 (what `--issuer-key` files hold, hex).
    pkcs8: Arc<Vec<u8>>,
    key: Arc<EcdsaKeyPair>,
    /// `kid` header: base64url SHA-256 of the public key.
    kid: String,
    /// Stable uid per service account name (as the API server's objects have).
    sa_uid_seed: [u8; 16],
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer { .. }")
    }
}

/// A deterministic uuid-shaped id from a seed and a name.
pub fn stable_uid(seed: &[u8], name: &str) -> String {
    let h = Sha256::new()
        .chain_update(seed)
        .chain_update(name.as_bytes())
        .finalize();
    uuid::Builder::from_random_bytes(h[..16].try_into().unwrap_or_default())
        .into_uuid()
        .to_string()
}

impl Issuer {
    /// A new issuer with a fresh P-256 key.
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system random source works");
        Self::from_pkcs8(doc.as_ref()).expect("a key ring just made parses")
    }

    /// An issuer with a known PKCS#8 P-256 key (shared between
    /// `credtrail-apisim serve` and `credtrail-apisim mint`).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, TokenError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| TokenError::Claims(format!("issuer key: not a PKCS#8 P-256 key: {e}")))?;
        let public = key.public_key().as_ref().to_vec();
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(&public));
        let seed = Sha256::new()
            .chain_update(b"sa-uid")
            .chain_update(&public)
            .finalize();
        let mut sa_uid_seed = [0u8; 16];
        sa_uid_seed.copy_from_slice(&seed[..16]);
        Ok(Self {
            pkcs8: Arc::new(pkcs8.to_vec()),
            key: Arc::new(key),
            kid,
            sa_uid_seed,
        })
    }

    /// The private key, hex PKCS#8 (for `--issuer-key` files; a test secret).
    pub fn key_hex(&self) -> String {
        hex::encode(self.pkcs8.as_slice())
    }

    /// Parses a key written by [`Issuer::key_hex`].
    pub fn from_key_hex(s: &str) -> Result<Self, TokenError> {
        let bytes =
            hex::decode(s.trim()).map_err(|e| TokenError::Claims(format!("issuer key: {e}")))?;
        Self::from_pkcs8(&bytes)
    }

    /// Signs the given claims as a token (for claims built elsewhere, e.g.
    /// from a kubelet fixture's pod).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap_or_default());
        let signing_input = format!("{h}.{p}");
        // JWS ES256 is the fixed-size r || s, which is what ring's FIXED form gives.
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{signing_input}.{sig}")
    }

    /// Mints a token; returns the token string and its claims.
    pub fn mint(&self, spec: &TokenSpec) -> (String, Claims) {
        let now = Utc::now().timestamp();
        let sa_key = format!("{}/{}", spec.namespace, spec.service_account);
        let claims = Claims {
            aud: vec![ISSUER.to_string()],
            exp: now + spec.lifetime_secs,
            iat: now,
            iss: ISSUER.to_string(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes_io: K8sClaim {
                namespace: spec.namespace.clone(),
                serviceaccount: Ref {
                    name: spec.service_account.clone(),
                    uid: stable_uid(&self.sa_uid_seed, &sa_key),
                },
                pod: spec.pod.clone(),
                node: spec.node.clone(),
                warnafter: spec.pod.as_ref().map(|_| now + 3607),
            },
            nbf: now,
            sub: format!(
                "system:serviceaccount:{}:{}",
                spec.namespace, spec.service_account
            ),
        };
        (self.sign(&claims), claims)
    }

    /// Mints a token for `audiences` (a projected volume's `audience`).
    pub fn mint_for(&self, spec: &TokenSpec, audiences: &[&str]) -> (String, Claims) {
        let (_, mut claims) = self.mint(spec);
        claims.aud = audiences.iter().map(|a| (*a).to_owned()).collect();
        (self.sign(&claims), claims)
    }

    /// The issuer's public key set, as `/openid/v1/jwks` serves it.
    pub fn jwks(&self) -> serde_json::Value {
        // Uncompressed point: 0x04 || x || y.
        let pk = self.key.public_key().as_ref();
        serde_json::json!({"keys": [{
            "use": "sig", "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&pk[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&pk[33..65]),
        }]})
    }

    /// Verifies a token this issuer minted and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotJwt);
        };
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::NotJwt)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::NotJwt)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|e| TokenError::Claims(e.to_string()))?;
        let now = Utc::now().timestamp();
        if claims.exp < now {
            return Err(TokenError::Expired);
        }
        // The API server checks `nbf` too (go-jose, with a minute of leeway);
        // the simulator allows none, so a test can mint a token that becomes
        // valid a moment later.
        if claims.nbf > now {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_forgeries_do_not() {
        let issuer = Issuer::new();
        let spec = TokenSpec {
            namespace: "shop".into(),
            service_account: "web".into(),
            pod: Some(Ref {
                name: "web-1".into(),
                uid: "pod-uid".into(),
            }),
            node: Some(Ref {
                name: "node-a".into(),
                uid: "node-uid".into(),
            }),
            lifetime_secs: 3600,
        };
        let (token, claims) = issuer.mint(&spec);
        assert_eq!(issuer.verify(&token).unwrap(), claims);
        let head = token.split('.').next().unwrap();
        let head: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
        assert_eq!(head["alg"], "ES256");
        assert_eq!(
            head["kid"].as_str().unwrap().len(),
            43,
            "base64url of a SHA-256"
        );
        // The key survives a round trip through its hex file form.
        let again = Issuer::from_key_hex(&issuer.key_hex()).unwrap();
        assert_eq!(again.verify(&token).unwrap(), claims);
        assert!(Issuer::from_key_hex("00ff").is_err());
        assert_eq!(claims.username(), "system:serviceaccount:shop:web");
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["kubernetes.io"]["pod"]["name"], "web-1");
        assert_eq!(json["kubernetes.io"]["node"]["uid"], "node-uid");
        // Another issuer's token, and a tampered one, are refused.
        let (other, _) = Issuer::new().mint(&spec);
        assert_eq!(issuer.verify(&other).unwrap_err(), TokenError::BadSignature);
        assert_eq!(issuer.verify("abc").unwrap_err(), TokenError::NotJwt);
        // Same service account, same uid; different jti.
        let (_, again) = issuer.mint(&spec);
        assert_eq!(
            again.kubernetes_io.serviceaccount,
            claims.kubernetes_io.serviceaccount
        );
        assert_ne!(again.jti, claims.jti);
        // Not valid yet: refused until its `nbf`.
        let mut early = claims.clone();
        early.nbf += 60;
        assert_eq!(
            issuer.verify(&issuer.sign(&early)).unwrap_err(),
            TokenError::NotYetValid
        );
    }
}
