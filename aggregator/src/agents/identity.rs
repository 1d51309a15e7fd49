//! Which node an agent speaks for.
//!
//! Two ways, chosen per deployment ([`AgentAuth`]):
//!
//! - **kubelet-style client certificate** (decision also stated in
//!   agent.proto): the certificate names its node the way a kubelet's does,
//!   in the subject common name `system:node:<name>`. Subject alternative
//!   names are not consulted. The chain itself was already verified against
//!   the agents' CA by the TLS layer before any request reaches the service.
//! - **projected ServiceAccount token** ([`TokenIdentity`]), sent as
//!   `authorization: Bearer` over server-authenticated TLS: audience
//!   `credtrail`, verified with the API server's `TokenReview` or against the
//!   service-account issuer's JWKS ([`crate::auth::jwks`]); the token must be
//!   the agent DaemonSet's (configured namespace and ServiceAccount), bound to
//!   a pod, and name the node (`kubernetes.io` → `node.name`, Kubernetes
//!   1.30+), which must then equal the node of the hello.

use std::sync::Arc;

/// Why a peer certificate does not identify a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("client certificate could not be parsed: {0}")]
    Unparsable(String),
    #[error("client certificate has no subject common name")]
    NoCommonName,
    #[error("client certificate subject CN {0:?} is not of the form system:node:<name>")]
    NotANode(String),
}

/// Why a token does not identify an agent. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenIdentityError {
    #[error("no client certificate and no bearer token were presented")]
    Missing,
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token belongs to {0:?}, not to the agent DaemonSet's ServiceAccount")]
    WrongServiceAccount(String),
    #[error("the token names no node (bound to a pod on Kubernetes 1.30+ is required)")]
    NoNode,
    #[error("the token is not bound to a pod")]
    NoPod,
    #[error("the token review service is unavailable: {0}")]
    Unavailable(String),
}

/// What a verified token says about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPrincipal {
    pub node: String,
    pub pod: String,
    pub pod_uid: String,
}

/// How agents' tokens are verified.
pub enum TokenVerifier {
    /// Against the service-account issuer's keys (`--agent-token-jwks`).
    Jwks {
        keys: Arc<crate::auth::jwks::JwksFile>,
        expect: crate::auth::jwks::Expect,
    },
    /// With the API server's `TokenReview` (audience `credtrail`).
    TokenReview(Arc<crate::auth::kube::KubeAuth>),
}

/// The audience agents' tokens must carry.
pub const AUDIENCE: &str = "credtrail";

/// Verifies agents' projected ServiceAccount tokens.
pub struct TokenIdentity {
    pub verifier: TokenVerifier,
    /// The agent DaemonSet's namespace and ServiceAccount.
    pub namespace: String,
    pub service_account: String,
}

#[derive(serde::Deserialize)]
struct NameUid {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

#[derive(serde::Deserialize)]
struct KubeClaims {
    #[serde(default)]
    namespace: String,
    serviceaccount: Option<NameUid>,
    pod: Option<NameUid>,
    node: Option<NameUid>,
}

#[derive(serde::Deserialize)]
struct SaClaims {
    #[serde(default)]
    sub: String,
    #[serde(rename = "kubernetes.io")]
    kube: Option<KubeClaims>,
}

impl TokenIdentity {
    fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// The agent `token` speaks for.
    pub async fn verify(&self, token: &str) -> Result<AgentPrincipal, TokenIdentityError> {
        let want = self.username();
        match &self.verifier {
            TokenVerifier::Jwks { keys, expect } => {
                let c: SaClaims = keys
                    .verify(token, expect)
                    .map_err(|e| TokenIdentityError::Invalid(e.to_string()))?;
                let k = c
                    .kube
                    .ok_or_else(|| TokenIdentityError::WrongServiceAccount(c.sub.clone()))?;
                let sa = k.serviceaccount.map(|s| s.name).unwrap_or_default();
                if c.sub != want || k.namespace != self.namespace || sa != self.service_account {
                    return Err(TokenIdentityError::WrongServiceAccount(c.sub));
                }
                let pod = k.pod.ok_or(TokenIdentityError::NoPod)?;
                if pod.name.is_empty() || pod.uid.is_empty() {
                    return Err(TokenIdentityError::NoPod);
                }
                let node = k
                    .node
                    .map(|n| n.name)
                    .filter(|n| !n.is_empty())
                    .ok_or(TokenIdentityError::NoNode)?;
                Ok(AgentPrincipal {
                    node,
                    pod: pod.name,
                    pod_uid: pod.uid,
                })
            }
            TokenVerifier::TokenReview(kube) => {
                let user = kube
                    .review(token, &[AUDIENCE])
                    .await
                    .map_err(TokenIdentityError::Unavailable)?
                    .ok_or_else(|| {
                        TokenIdentityError::Invalid("TokenReview: not authenticated".into())
                    })?;
                if user.username != want {
                    return Err(TokenIdentityError::WrongServiceAccount(user.username));
                }
                let extra = |k: &str| {
                    user.extra
                        .get(k)
                        .and_then(|v| v.first())
                        .filter(|v| !v.is_empty())
                        .cloned()
                };
                let pod = extra("authentication.kubernetes.io/pod-name")
                    .ok_or(TokenIdentityError::NoPod)?;
                let pod_uid = extra("authentication.kubernetes.io/pod-uid")
                    .ok_or(TokenIdentityError::NoPod)?;
                let node = extra("authentication.kubernetes.io/node-name")
                    .ok_or(TokenIdentityError::NoNode)?;
                Ok(AgentPrincipal { node, pod, pod_uid })
            }
        }
    }
}

/// How agents authenticate at the agent listener.
#[derive(Clone, Default)]
pub enum AgentAuth {
    /// A client certificate `system:node:<name>` chaining to the agents' CA.
    #[default]
    Certificate,
    /// A projected ServiceAccount token (server-authenticated TLS).
    Token(Arc<TokenIdentity>),
    /// Either: a certificate when one is presented, else a token.
    CertificateOrToken(Arc<TokenIdentity>),
}

impl std::fmt::Debug for AgentAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentAuth::Certificate => "Certificate",
            AgentAuth::Token(_) => "Token",
            AgentAuth::CertificateOrToken(_) => "CertificateOrToken",
        })
    }
}

impl AgentAuth {
    pub fn accepts_certificates(&self) -> bool {
        !matches!(self, AgentAuth::Token(_))
    }

    pub fn tokens(&self) -> Option<&Arc<TokenIdentity>> {
        match self {
            AgentAuth::Certificate => None,
            AgentAuth::Token(t) | AgentAuth::CertificateOrToken(t) => Some(t),
        }
    }
}

/// Prefix of a node identity's common name.
pub const NODE_CN_PREFIX: &str = "system:node:";

/// The node named by the DER certificate `der`.
pub fn node_from_cert(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoCommonName)?;
    let cn = cn
        .as_str()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    match cn.strip_prefix(NODE_CN_PREFIX) {
        Some(node) if !node.is_empty() => Ok(node.to_string()),
        _ => Err(IdentityError::NotANode(cn.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn node_name_comes_from_the_common_name() {
        assert_eq!(
            node_from_cert(&cert("system:node:node-a")).unwrap(),
            "node-a"
        );
        assert_eq!(
            node_from_cert(&cert("alice")).unwrap_err(),
            IdentityError::NotANode("alice".into())
        );
        assert_eq!(
            node_from_cert(&cert("system:node:")).unwrap_err(),
            IdentityError::NotANode("system:node:".into())
        );
        assert!(matches!(
            node_from_cert(b"garbage").unwrap_err(),
            IdentityError::Unparsable(_)
        ));
    }
}
