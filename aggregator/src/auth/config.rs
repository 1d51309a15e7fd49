//! The query API's authentication settings as `serve` receives them, and the
//! start-up checks: a query listener must be able to authenticate someone;
//! `--api-insecure-no-auth` only on loopback, and loudly.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::kube::{KubeAuth, KubeConfig};
use super::{ApiAuth, HttpPolicy, TokenFile, default_hosts};

/// Settings (flags in `main.rs`).
#[derive(Debug, Clone, Default)]
pub struct ApiAuthConfig {
    /// `--api-token-file`: `<name> <role> sha256:<hex>` lines.
    pub token_file: Option<PathBuf>,
    /// `--api-kube-auth` (in-cluster) or `--api-kube-server` & co.
    pub kube: Option<KubeConfig>,
    /// `--api-insecure-no-auth`: everyone is admin (loopback only).
    pub insecure_no_auth: bool,
    /// `--api-allowed-host`: names the `Host` header may carry, besides the
    /// loopback names and the listen address (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// `--metrics-require-auth`.
    pub metrics_require_auth: bool,
    /// `--api-tls-cert`/`--api-tls-key`: serve both query listeners over TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--api-client-ca`: verify client certificates (needs TLS).
    pub client_ca: Option<PathBuf>,
    /// `--api-cert-role`: `CN=<name>:<role>` / `O=<group>:<role>`.
    pub cert_roles: Vec<String>,
}

/// Why `serve` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "the query API ({0}) would let nobody in: set --api-token-file (see `credtrail-aggregator api-token`), --api-kube-auth, and/or --api-client-ca with --api-cert-role; \
         --api-insecure-no-auth exists for local development on loopback only; or turn the listener off (--api-listen off --grpc-listen off)"
    )]
    NoWay(String),
    #[error(
        "--api-insecure-no-auth is refused on {0}, which is not a loopback address; use --api-token-file or --api-kube-auth"
    )]
    InsecureNotLoopback(SocketAddr),
    #[error("--api-insecure-no-auth cannot be combined with --api-token-file or --api-kube-auth")]
    InsecureCombined,
    #[error("--api-token-file: {0}")]
    Tokens(#[from] super::TokenFileError),
    #[error("--api-kube-auth: {0}")]
    Kube(#[from] super::kube::KubeAuthError),
    #[error(transparent)]
    CertRole(#[from] super::certs::CertRoleError),
    #[error("{0}")]
    Tls(String),
}

/// Both listeners' TLS from the files.
fn listener_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> Result<super::ListenerTls, AuthConfigError> {
    let watch = crate::ingest::tls::watch(
        "api",
        &crate::ingest::tls::TlsPaths {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: ca.map(std::path::Path::to_path_buf),
        },
    )
    .map_err(|e| AuthConfigError::Tls(format!("query API TLS: {e}")))?;
    // The same certificate and verifier (one watch); gRPC speaks HTTP/2 only.
    let tls_err =
        |e: crate::ingest::tls::TlsError| AuthConfigError::Tls(format!("query API TLS: {e}"));
    let http = watch.server_config(&[b"http/1.1"]).map_err(tls_err)?;
    let grpc = watch.server_config(&[b"h2"]).map_err(tls_err)?;
    Ok(super::ListenerTls { http, grpc })
}

impl ApiAuthConfig {
    /// Builds the authenticator for listeners at `listens` (the HTTP and gRPC
    /// query addresses that are on).
    pub fn build(&self, listens: &[SocketAddr]) -> Result<ApiAuth, AuthConfigError> {
        let mut hosts = default_hosts(listens.first().copied());
        for l in listens.iter().skip(1) {
            for h in default_hosts(Some(*l)) {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        }
        for h in &self.allowed_hosts {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() && !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let http = HttpPolicy {
            allowed_hosts: hosts,
            metrics_require_auth: self.metrics_require_auth,
        };
        if self.insecure_no_auth {
            if self.token_file.is_some() || self.kube.is_some() {
                return Err(AuthConfigError::InsecureCombined);
            }
            if let Some(a) = listens.iter().find(|a| !a.ip().is_loopback()) {
                return Err(AuthConfigError::InsecureNotLoopback(*a));
            }
            return Ok(ApiAuth::insecure_no_auth().with_http(http));
        }
        let mut auth = ApiAuth::deny_all().with_http(http);
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                auth = auth.with_tls(listener_tls(c, k, self.client_ca.as_deref())?);
            }
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(AuthConfigError::Tls(
                        "--api-client-ca needs --api-tls-cert and --api-tls-key (client certificates need TLS)".into(),
                    ));
                }
            }
            _ => {
                return Err(AuthConfigError::Tls(
                    "--api-tls-cert and --api-tls-key go together".into(),
                ));
            }
        }
        if !self.cert_roles.is_empty() {
            if self.client_ca.is_none() {
                return Err(AuthConfigError::Tls(
                    "--api-cert-role needs --api-client-ca".into(),
                ));
            }
            auth = auth.with_certs(super::certs::CertRoles::parse(&self.cert_roles)?);
        }
        if let Some(f) = &self.token_file {
            auth = auth.with_tokens(TokenFile::load(f)?);
        }
        if let Some(k) = &self.kube {
            auth = auth.with_kube(KubeAuth::new(k.clone())?);
        }
        if !listens.is_empty() && !auth.is_configured() {
            let names: Vec<String> = listens.iter().map(ToString::to_string).collect();
            return Err(AuthConfigError::NoWay(names.join(", ")));
        }
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_no_way_and_insecure_off_loopback() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let e = ApiAuthConfig::default().build(&[lo]).unwrap_err();
        assert!(e.to_string().contains("--api-token-file"), "{e}");
        // No query listener: nothing to protect.
        assert!(ApiAuthConfig::default().build(&[]).is_ok());
        let insecure = ApiAuthConfig {
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(insecure.build(&[lo]).unwrap().is_insecure());
        let e = insecure.build(&[lo, any]).unwrap_err();
        assert!(
            matches!(e, AuthConfigError::InsecureNotLoopback(a) if a == any),
            "{e}"
        );
        let e = ApiAuthConfig {
            token_file: Some("/nonexistent/tokens".into()),
            ..Default::default()
        }
        .build(&[lo])
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tokens"), "{e}");
    }

    #[test]
    fn allowed_hosts_are_loopback_the_listen_address_and_the_configured_names() {
        let at: SocketAddr = "127.0.0.7:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let a = ApiAuthConfig {
            insecure_no_auth: true,
            allowed_hosts: vec!["Credtrail.SOC.example".into()],
            ..Default::default()
        }
        .build(&[at])
        .unwrap();
        let h = &a.http.allowed_hosts;
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "127.0.0.7",
            "credtrail.soc.example",
        ] {
            assert!(h.iter().any(|x| x == want), "{want} in {h:?}");
        }
        // An unspecified listen address names no host.
        let t = tempfile_tokens();
        let a = ApiAuthConfig {
            token_file: Some(t.path().to_path_buf()),
            ..Default::default()
        }
        .build(&[any])
        .unwrap();
        assert!(!a.http.allowed_hosts.iter().any(|x| x == "0.0.0.0"));
    }

    fn tempfile_tokens() -> TempTokens {
        let path = std::env::temp_dir().join(format!("credtrail-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            super::super::tokens::line("a", super::super::Role::Viewer, "t"),
        )
        .unwrap();
        TempTokens(path)
    }

    struct TempTokens(PathBuf);

    impl TempTokens {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempTokens {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
