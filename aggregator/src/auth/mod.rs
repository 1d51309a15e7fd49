//! Who may use the query API, and for what.
//!
//! Every request to the HTTP `/api/v1/…` routes and every gRPC `QueryService`
//! call is authenticated ([`ApiAuth::authenticate`]) and then checked against
//! the [`Access`] it needs ([`ApiAuth::authorize`]). Ways to authenticate:
//!
//! - bearer tokens from a token file ([`tokens`]): each has a name and a
//!   [`Role`]; only the SHA-256 of each token is held, compared in constant
//!   time;
//! - Kubernetes-native ([`kube`]): a ServiceAccount/OIDC bearer token checked
//!   with the API server's `TokenReview`; the decision per [`Access`] made
//!   with a `SubjectAccessReview` on resource `alerts` of group
//!   `credtrail.io` (verbs `get`, `update`, `admin`), so the cluster's own
//!   RBAC decides (as kube-rbac-proxy does).
//!
//! - client certificates ([`certs`]): verified against `--api-client-ca` by
//!   the TLS layer of the query listeners (`--api-tls-cert`/`--api-tls-key`),
//!   the subject mapped to a role by `--api-cert-role` rules.
//!
//! The HTTP middleware ([`http`]) adds the browser-facing checks: the `Host`
//! header against the allowed names (stops DNS rebinding) and
//! `Content-Type: application/json` on writes (stops simple cross-origin form
//! posts). Tokens never appear in errors, logs or metrics.

pub mod certs;
pub mod config;
pub mod http;
pub mod jwks;
pub mod kube;
pub mod review_cache;
pub mod tokens;

use std::fmt;
use std::sync::Arc;

pub use tokens::{TokenFile, TokenFileError};

/// A role, ordered: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, exports, live stream.
    Viewer,
    /// Also suppressions and triage writes.
    Responder,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "responder" => Some(Role::Responder),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reads, exports, live stream, `/metrics` when it is protected.
    Read,
    /// Suppressions and other triage writes.
    Write,
    /// Administration.
    Admin,
}

impl Access {
    /// The least role that grants it.
    pub fn min_role(self) -> Role {
        match self {
            Access::Read => Role::Viewer,
            Access::Write => Role::Responder,
            Access::Admin => Role::Admin,
        }
    }

    /// The verb checked with a `SubjectAccessReview` on `alerts.credtrail.io`.
    pub fn kube_verb(self) -> &'static str {
        match self {
            Access::Read => "get",
            Access::Write => "update",
            Access::Admin => "admin",
        }
    }
}

/// How a principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    TokenFile,
    TokenReview,
    /// A client certificate verified against `--api-client-ca`.
    ClientCert,
    /// `--api-insecure-no-auth` (local development only).
    Insecure,
}

/// An authenticated caller. Its name is what suppressions record as their
/// creator or deleter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `token:<name>` for a token-file entry, `kube:<username>` for a
    /// TokenReview user, `insecure:local` without authentication.
    pub name: String,
    /// The role it holds; `None` when every decision is asked of the
    /// cluster (TokenReview mode).
    pub role: Option<Role>,
    pub method: Method,
    /// Kubernetes user details, for SubjectAccessReview.
    pub kube_user: Option<kube::KubeUser>,
}

/// Why a request is refused. Messages never contain the presented token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, a malformed header, or an unknown token: 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but the role does not allow it: 403.
    #[error("permission denied: {principal} ({role}) may not {what}")]
    Forbidden {
        principal: String,
        role: String,
        what: &'static str,
    },
    /// The API server could not be asked (TokenReview/SubjectAccessReview): 503.
    #[error("authentication backend unavailable")]
    Unavailable,
}

impl AuthError {
    /// Short reason label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "unauthenticated",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::Unavailable => "unavailable",
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(_) => tonic::Status::unauthenticated(e.to_string()),
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(e.to_string()),
            AuthError::Unavailable => tonic::Status::unavailable(e.to_string()),
        }
    }
}

/// The token in an `Authorization` header value: scheme `Bearer` matched
/// case-insensitively (RFC 7235), then one or more spaces, then the token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Settings of the HTTP front (browser-facing checks).
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    /// Host names (without port) the `Host` header may carry; empty = any
    /// (not the default: see [`default_hosts`]).
    pub allowed_hosts: Vec<String>,
    /// Whether `/metrics` needs a token (role viewer).
    pub metrics_require_auth: bool,
}

/// Loopback names plus the listen address's IP, when it is a specific one.
pub fn default_hosts(listen: Option<std::net::SocketAddr>) -> Vec<String> {
    let mut h: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(a) = listen
        && !a.ip().is_unspecified()
    {
        let ip = a.ip().to_string();
        if !h.contains(&ip) {
            h.push(ip);
        }
    }
    h
}

/// Every way the query listeners authenticate, shared by HTTP and gRPC.
#[derive(Clone)]
pub struct ApiAuth {
    tokens: Option<Arc<TokenFile>>,
    kube: Option<Arc<kube::KubeAuth>>,
    certs: Option<Arc<certs::CertRoles>>,
    insecure: bool,
    pub http: HttpPolicy,
    /// TLS of the query listeners (HTTP and gRPC), when configured.
    pub tls: Option<ListenerTls>,
}

/// TLS for the query listeners (both served by `crate::listen`): the same
/// certificate and client CA, offering HTTP/1.1 on the HTTP listener and
/// HTTP/2 on the gRPC one.
#[derive(Clone)]
pub struct ListenerTls {
    pub http: Arc<rustls::ServerConfig>,
    pub grpc: Arc<rustls::ServerConfig>,
}

/// The verified client certificate of an HTTPS connection (request extension).
#[derive(Debug, Clone)]
pub struct PeerCert(pub Arc<Vec<u8>>);

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAuth")
            .field("tokens", &self.tokens.as_ref().map(|t| t.len()))
            .field("kube", &self.kube.is_some())
            .field("certs", &self.certs.is_some())
            .field("tls", &self.tls.is_some())
            .field("insecure", &self.insecure)
            .field("http", &self.http)
            .finish()
    }
}

impl Default for ApiAuth {
    /// Nobody is authenticated (every call answers 401/Unauthenticated).
    fn default() -> Self {
        Self::deny_all()
    }
}

impl ApiAuth {
    /// Nobody is authenticated.
    pub fn deny_all() -> Self {
        Self {
            tokens: None,
            kube: None,
            certs: None,
            tls: None,
            insecure: false,
            http: HttpPolicy {
                allowed_hosts: default_hosts(None),
                metrics_require_auth: false,
            },
        }
    }

    /// Everyone is `admin` as `insecure:local` (`--api-insecure-no-auth`).
    pub fn insecure_no_auth() -> Self {
        Self {
            insecure: true,
            ..Self::deny_all()
        }
    }

    pub fn with_tokens(mut self, t: TokenFile) -> Self {
        self.tokens = Some(Arc::new(t));
        self
    }

    pub fn with_kube(mut self, k: kube::KubeAuth) -> Self {
        self.kube = Some(Arc::new(k));
        self
    }

    /// Client-certificate subjects → roles (needs [`Self::with_tls`] with a client CA).
    pub fn with_certs(mut self, c: certs::CertRoles) -> Self {
        self.certs = Some(Arc::new(c));
        self
    }

    pub fn with_tls(mut self, t: ListenerTls) -> Self {
        self.tls = Some(t);
        self
    }

    pub fn with_http(mut self, h: HttpPolicy) -> Self {
        self.http = h;
        self
    }

    /// Whether anyone at all can be authenticated.
    pub fn is_configured(&self) -> bool {
        self.insecure
            || self.tokens.as_ref().is_some_and(|t| !t.is_empty())
            || self.kube.is_some()
            || self.certs.as_ref().is_some_and(|c| !c.is_empty())
    }

    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Who presents this `Authorization` header value (`None`: absent).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate_with(authorization, None).await
    }

    /// Who presents this `Authorization` header or, without one, this
    /// verified client certificate (DER).
    pub async fn authenticate_with(
        &self,
        authorization: Option<&str>,
        cert: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        if authorization.is_none()
            && !self.insecure
            && let (Some(der), Some(roles)) = (cert, &self.certs)
        {
            return roles.principal(der).ok_or(AuthError::Unauthenticated(
                "the client certificate's subject maps to no role",
            ));
        }
        if self.insecure {
            return Ok(Principal {
                name: "insecure:local".into(),
                role: Some(Role::Admin),
                method: Method::Insecure,
                kube_user: None,
            });
        }
        let header = authorization.ok_or(AuthError::Unauthenticated(
            "send Authorization: Bearer <token>",
        ))?;
        let token = bearer(header).ok_or(AuthError::Unauthenticated(
            "the Authorization header is not `Bearer <token>`",
        ))?;
        if let Some(t) = &self.tokens
            && let Some(entry) = t.find(token)
        {
            return Ok(Principal {
                name: format!("token:{}", entry.name),
                role: Some(entry.role),
                method: Method::TokenFile,
                kube_user: None,
            });
        }
        if let Some(k) = &self.kube {
            return k.authenticate(token).await;
        }
        Err(AuthError::Unauthenticated("unknown token"))
    }

    /// Whether `p` may do what `access` names; `what` describes it in the error.
    pub async fn authorize(
        &self,
        p: &Principal,
        access: Access,
        what: &'static str,
    ) -> Result<(), AuthError> {
        let allowed = match (p.role, &p.kube_user, &self.kube) {
            (Some(role), _, _) => role >= access.min_role(),
            (None, Some(user), Some(k)) => k.authorize(user, access).await?,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                principal: p.name.clone(),
                role: p.role.map_or_else(
                    || format!("no `{}` on alerts.credtrail.io", access.kube_verb()),
                    |r| r.to_string(),
                ),
                what,
            })
        }
    }

    /// Authenticates and authorizes in one step.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        access: Access,
        what: &'static str,
    ) -> Result<Principal, AuthError> {
        self.check_with(authorization, None, access, what).await
    }

    /// [`Self::check`] with the connection's verified client certificate.
    pub async fn check_with(
        &self,
        authorization: Option<&str>,
        cert: Option<&[u8]>,
        access: Access,
        what: &'static str,
    ) -> Result<Principal, AuthError> {
        let p = self.authenticate_with(authorization, cert).await?;
        self.authorize(&p, access, what).await?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin >= Access::Write.min_role());
        assert!(Role::Responder >= Access::Write.min_role());
        assert!(Role::Viewer < Access::Write.min_role());
        assert!(Role::Viewer >= Access::Read.min_role());
        assert!(Role::Responder < Access::Admin.min_role());
    }

    #[tokio::test]
    async fn deny_all_denies_and_insecure_admits_as_admin() {
        let a = ApiAuth::deny_all();
        assert!(!a.is_configured());
        assert!(matches!(
            a.authenticate(Some("Bearer x")).await,
            Err(AuthError::Unauthenticated(_))
        ));
        let i = ApiAuth::insecure_no_auth();
        let p = i.authenticate(None).await.unwrap();
        assert_eq!(p.role, Some(Role::Admin));
        assert_eq!(p.name, "insecure:local");
    }
}
