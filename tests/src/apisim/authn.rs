//! Authentication as the kube-apiserver does it, for the two credential
//! kinds the simulator knows: client certificates (CN = user, O = groups)
//! and service-account bearer tokens it issued. `user.extra` carries what a
//! 1.30+ API server writes: `authentication.kubernetes.io/credential-id`
//! (`X509SHA256=<hex>` or `JTI=<jti>`) and, for pod-bound tokens, the
//! node and pod names and uids.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::token::{Issuer, TokenError};

pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// The audit event's `user`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UserInfo {
    /// Empty for a request whose authentication failed (the event says `"user":{}`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a request is unauthenticated (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("invalid bearer token: {0}")]
    Token(#[from] TokenError),
    #[error("client certificate: {0}")]
    Cert(String),
}

/// The user a verified client certificate (DER) names.
pub fn from_cert(der: &[u8]) -> Result<UserInfo, AuthnError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| AuthnError::Cert(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| AuthnError::Cert("no subject CN".into()))?
        .to_string();
    let mut groups: Vec<String> = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    let fp = hex::encode(Sha256::digest(der));
    Ok(UserInfo {
        username: cn,
        uid: None,
        groups,
        extra: BTreeMap::from([(EXTRA_CREDENTIAL_ID.into(), vec![format!("X509SHA256={fp}")])]),
    })
}

/// The service account a bearer token names.
pub fn from_token(issuer: &Issuer, token: &str) -> Result<UserInfo, AuthnError> {
    let claims = issuer.verify(token)?;
    let k = &claims.kubernetes_io;
    let mut extra = BTreeMap::from([(
        EXTRA_CREDENTIAL_ID.to_string(),
        vec![format!("JTI={}", claims.jti)],
    )]);
    if let Some(node) = &k.node {
        extra.insert(EXTRA_NODE_NAME.into(), vec![node.name.clone()]);
        extra.insert(EXTRA_NODE_UID.into(), vec![node.uid.clone()]);
    }
    if let Some(pod) = &k.pod {
        extra.insert(EXTRA_POD_NAME.into(), vec![pod.name.clone()]);
        extra.insert(EXTRA_POD_UID.into(), vec![pod.uid.clone()]);
    }
    Ok(UserInfo {
        username: claims.username(),
        uid: Some(k.serviceaccount.uid.clone()),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
        extra,
    })
}

/// The anonymous user (no credential presented).
pub fn anonymous() -> UserInfo {
    UserInfo {
        username: "system:anonymous".into(),
        uid: None,
        groups: vec!["system:unauthenticated".into()],
        extra: BTreeMap::new(),
    }
}
