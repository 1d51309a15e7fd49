//! Kubernetes-native authentication (as kube-rbac-proxy does it): a bearer
//! token is checked with the API server's `TokenReview`; each [`Access`] is
//! decided with a `SubjectAccessReview` on resource `alerts` of API group
//! `credtrail.io` (verbs `get` = read, `update` = triage writes, `admin`).
//! Answers are cached briefly (bounded in entries and time), keyed by the
//! token's SHA-256 — never the token; concurrent reviews of one token are
//! one request ([`super::review_cache`]).
//!
//! The aggregator authenticates to the API server with its own
//! ServiceAccount token (re-read from its file on every call, as projected
//! tokens rotate) and needs `create` on `tokenreviews` and
//! `subjectaccessreviews`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};

use super::review_cache::{Cache, ReviewCache};
use super::{Access, AuthError, Method, Principal};

/// The resource SubjectAccessReviews ask about.
pub const GROUP: &str = "credtrail.io";
pub const RESOURCE: &str = "alerts";

/// How long an answer is kept.
pub const CACHE_TTL: Duration = super::review_cache::POSITIVE_TTL;
/// How long a refusal is kept (shorter: a fixed binding takes effect soon).
pub const NEGATIVE_TTL: Duration = super::review_cache::NEGATIVE_TTL;
/// Longest wait for the API server.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from the API server.
const MAX_RESPONSE: usize = 1 << 20;

/// Where the API server is and how to reach it.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// `https://host:port`.
    pub server: String,
    /// CA of the API server's serving certificate (PEM).
    pub ca: PathBuf,
    /// The aggregator's own bearer token file.
    pub token_file: PathBuf,
    /// Namespace of the SubjectAccessReviews (the aggregator's own), so a
    /// namespaced Role/RoleBinding there decides; `None` asks cluster-wide.
    pub namespace: Option<String>,
}

impl KubeConfig {
    /// The in-cluster configuration (`KUBERNETES_SERVICE_HOST`/`_PORT` and the
    /// mounted ServiceAccount), or why it is not there.
    pub fn in_cluster() -> Result<Self, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "KUBERNETES_SERVICE_HOST is not set (not in a pod?)".to_owned())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let sa = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
        let namespace = std::fs::read_to_string(sa.join("namespace"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(Self {
            server: format!("https://{host}:{port}"),
            ca: sa.join("ca.crt"),
            token_file: sa.join("token"),
            namespace,
        })
    }
}

/// A user as `TokenReview` names it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct KubeUser {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The TokenReview/SubjectAccessReview client and its caches.
pub struct KubeAuth {
    cfg: KubeConfig,
    tls: tokio_rustls::TlsConnector,
    authority: String,
    server_name: rustls::pki_types::ServerName<'static>,
    reviews: ReviewCache,
    decisions: Mutex<Cache<(String, Access), bool>>,
}

/// Errors setting up the client.
#[derive(Debug, thiserror::Error)]
pub enum KubeAuthError {
    #[error("API server URL {0:?}: expected https://host:port")]
    Url(String),
    #[error("API server CA {path}: {what}")]
    Ca { path: String, what: String },
    #[error("TLS client configuration: {0}")]
    Tls(String),
}

/// The CA certificates in a PEM file.
fn root_store(path: &Path) -> Result<rustls::RootCertStore, KubeAuthError> {
    let bad = |what: String| KubeAuthError::Ca {
        path: path.display().to_string(),
        what,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(c.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate found".into()));
    }
    Ok(roots)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KubeAuth {
    pub fn new(cfg: KubeConfig) -> Result<Self, KubeAuthError> {
        let authority = cfg
            .server
            .strip_prefix("https://")
            .map(|s| s.trim_end_matches('/'))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| KubeAuthError::Url(cfg.server.clone()))?
            .to_owned();
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => authority.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| KubeAuthError::Url(cfg.server.clone()))?;
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority
        } else {
            format!("{authority}:443")
        };
        let roots = root_store(&cfg.ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeAuthError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            cfg,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            authority,
            server_name,
            reviews: ReviewCache::default(),
            decisions: Mutex::new(Cache::new()),
        })
    }

    /// How long accepted tokens (never past their `exp`) and refusals are
    /// kept (defaults [`CACHE_TTL`], [`NEGATIVE_TTL`]).
    pub fn with_review_ttls(mut self, accepted: Duration, refused: Duration) -> Self {
        self.reviews = ReviewCache::new(accepted, refused);
        self
    }

    /// POSTs `body` to `path`; the status and the JSON answer.
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let own = std::fs::read_to_string(&self.cfg.token_file)
            .map_err(|e| format!("reading {}: {e}", self.cfg.token_file.display()))?;
        let call = async {
            let tcp = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
            let tls = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP with {}: {e}", self.authority))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = hyper::Request::post(path)
                .header("host", &self.authority)
                .header("authorization", format!("Bearer {}", own.trim()))
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| e.to_string())?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("{path}: reading the answer: {e}"))?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{path}: answer is not JSON: {e}"))?;
            Ok((status, v))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| format!("{path}: no answer within {TIMEOUT:?}"))?
    }

    /// `TokenReview` of `token` for `audiences` (cached, one review per token
    /// at a time): the user when the API server authenticates it *and* its
    /// answer names one of the audiences; `Ok(None)` when it does not; `Err`
    /// when the review failed.
    pub async fn review(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<Option<KubeUser>, String> {
        self.reviews
            .get_or_review(token, audiences, self.review_uncached(token, audiences))
            .await
    }

    async fn review_uncached(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<Option<KubeUser>, String> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        });
        let (status, v) = self
            .post("/apis/authentication.k8s.io/v1/tokenreviews", &body)
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "TokenReview answered {status} (does the aggregator's ServiceAccount have create on tokenreviews?)"
            ));
        }
        let st = &v["status"];
        if st["authenticated"].as_bool() != Some(true) {
            return Ok(None);
        }
        let aud_ok = st["audiences"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|x| audiences.contains(&x)))
        });
        if !aud_ok {
            return Ok(None);
        }
        Ok(serde_json::from_value::<KubeUser>(st["user"].clone())
            .ok()
            .filter(|u| !u.username.is_empty()))
    }

    /// Who `token` is, per `TokenReview` for the API server's own audiences
    /// (cached by its hash, one review per token at a time).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let user = self
            .reviews
            .get_or_review(token, &[], self.review_any_audience(token))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "TokenReview failed");
                AuthError::Unavailable
            })?;
        let user = user.ok_or(AuthError::Unauthenticated("unknown token"))?;
        Ok(Principal {
            name: format!("kube:{}", user.username),
            role: None,
            method: Method::TokenReview,
            kube_user: Some(user),
        })
    }

    /// `TokenReview` with no audience named (the API server's own).
    async fn review_any_audience(&self, token: &str) -> Result<Option<KubeUser>, String> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        let (status, v) = self
            .post("/apis/authentication.k8s.io/v1/tokenreviews", &body)
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "TokenReview answered {status} (does the aggregator's ServiceAccount have create on tokenreviews?)"
            ));
        }
        let st = &v["status"];
        Ok(if st["authenticated"].as_bool() == Some(true) {
            serde_json::from_value::<KubeUser>(st["user"].clone())
                .ok()
                .filter(|u| !u.username.is_empty())
        } else {
            None
        })
    }

    /// Whether `user` may do `access`, per `SubjectAccessReview` (cached).
    pub async fn authorize(&self, user: &KubeUser, access: Access) -> Result<bool, AuthError> {
        let key = (
            format!(
                "{}\u{0}{}\u{0}{}",
                user.username,
                user.uid,
                user.groups.join("\u{0}")
            ),
            access,
        );
        if let Some(d) = lock(&self.decisions).get(&key) {
            return Ok(d);
        }
        let mut attributes = json!({
            "group": GROUP,
            "resource": RESOURCE,
            "verb": access.kube_verb(),
        });
        if let Some(ns) = &self.cfg.namespace {
            attributes["namespace"] = json!(ns);
        }
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.username,
                "uid": user.uid,
                "groups": user.groups,
                "extra": user.extra,
                "resourceAttributes": attributes,
            },
        });
        let (status, v) = self
            .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &body)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                AuthError::Unavailable
            })?;
        if !(200..300).contains(&status) {
            tracing::warn!(
                status,
                "SubjectAccessReview refused (does the aggregator's ServiceAccount have create on subjectaccessreviews?)"
            );
            return Err(AuthError::Unavailable);
        }
        let allowed = v["status"]["allowed"].as_bool() == Some(true)
            && v["status"]["denied"].as_bool() != Some(true);
        let ttl = if allowed { CACHE_TTL } else { NEGATIVE_TTL };
        lock(&self.decisions).put(key, allowed, ttl);
        Ok(allowed)
    }
}
