//! Kubeconfig files: each user's credential by fingerprint and subject.
//!
//! Parsed with serde_norway into a partial model of `clientcmd/api/v1.Config`;
//! unknown fields are ignored. Secrets (`client-key-data`, `token`, `password`)
//! are hashed or skipped, never copied out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use credtrail_proto::model::{KubeconfigIdentity, KubeconfigUser};
use serde::Deserialize;

use super::jwt::token_identity;
use super::x509::{CertError, first_cert_in_pem};

/// Why a file is not a readable kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig is empty")]
    Empty,
    #[error("kubeconfig is not valid YAML for a Config: {0}")]
    Yaml(String),
    #[error(
        "kubeconfig has {0} flow brackets ('[' or '{{'), more than {MAX_FLOW_OPENERS}: not parsed"
    )]
    FlowBrackets(usize),
    #[error("not a kubeconfig: kind is not \"Config\"")]
    Kind,
    #[error("not a kubeconfig: no clusters, contexts or users")]
    NoContent,
    #[error("user {user:?}: client-certificate-data is not base64")]
    CertBase64 { user: String },
    #[error("user {user:?}: client certificate: {source}")]
    Cert {
        user: String,
        #[source]
        source: CertError,
    },
}

/// Most `[` and `{` a kubeconfig may hold before it is parsed. The YAML
/// scanner (libyaml's, in serde_norway) rechecks every open flow level on each
/// token, so a pod-written file of nested brackets costs its depth times its
/// length: 30,000 levels took 2.3 s, a 1 MiB file minutes. Their count bounds
/// the depth whatever quoting hides; kubectl writes block style, and a real
/// kubeconfig has a handful (`preferences: {}`, exec `args: [...]`).
pub const MAX_FLOW_OPENERS: usize = 512;

/// Reads a file a kubeconfig refers to (`client-certificate`, `tokenFile`),
/// resolved the way the process that opened the kubeconfig would see it.
pub trait RefReader {
    fn read(&self, path: &str) -> Option<Vec<u8>>;
}

/// Never reads referenced files.
pub struct NoRefs;
impl RefReader for NoRefs {
    fn read(&self, _path: &str) -> Option<Vec<u8>> {
        None
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    kind: Option<String>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    clusters: Vec<Named<Cluster>>,
    contexts: Vec<serde_norway::Value>,
    users: Vec<Named<User>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<T: Default> {
    name: String,
    #[serde(alias = "cluster", alias = "user")]
    inner: T,
}

// `clusters[].cluster` and `users[].user` both land in `inner` through the aliases.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Cluster {
    server: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    exec: Option<Exec>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<AuthProvider>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Exec {
    command: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthProvider {
    name: Option<String>,
}

/// Identifies a kubeconfig's users. Errors in one user's certificate fail the
/// whole file (with the user named), so a broken credential is never reported
/// as an identified one.
pub fn kubeconfig_identity(
    text: &str,
    refs: &dyn RefReader,
) -> Result<KubeconfigIdentity, KubeconfigError> {
    if text.trim().is_empty() {
        return Err(KubeconfigError::Empty);
    }
    let openers = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if openers > MAX_FLOW_OPENERS {
        return Err(KubeconfigError::FlowBrackets(openers));
    }
    let cfg: Config =
        serde_norway::from_str(text).map_err(|e| KubeconfigError::Yaml(yaml_problem(&e)))?;
    if let Some(kind) = &cfg.kind
        && kind != "Config"
    {
        return Err(KubeconfigError::Kind);
    }
    if cfg.clusters.is_empty() && cfg.contexts.is_empty() && cfg.users.is_empty() {
        return Err(KubeconfigError::NoContent);
    }
    let mut users = Vec::with_capacity(cfg.users.len().min(MAX_ENTRIES));
    for u in cfg.users.into_iter().take(MAX_ENTRIES) {
        let mut user = user_identity(cap(u.name), u.inner, refs)?;
        user.exec_command = user.exec_command.map(cap);
        user.auth_provider = user.auth_provider.map(cap);
        user.username = user.username.map(cap);
        users.push(user);
    }
    Ok(KubeconfigIdentity {
        current_context: cfg.current_context.filter(|c| !c.is_empty()).map(cap),
        servers: cfg
            .clusters
            .into_iter()
            .filter_map(|c| c.inner.server)
            .take(MAX_ENTRIES)
            .map(cap)
            .collect(),
        users,
    })
}

/// Users and servers described per kubeconfig, at most (real ones have a few).
pub const MAX_ENTRIES: usize = 32;
/// Longest name, server or command kept from a kubeconfig, in bytes.
pub const MAX_FIELD: usize = 256;

/// `s` cut at [`MAX_FIELD`] bytes (on a character boundary), marked `…`.
fn cap(mut s: String) -> String {
    if s.len() > MAX_FIELD {
        s.truncate(s.floor_char_boundary(MAX_FIELD));
        s.push('…');
    }
    s
}

/// What is wrong with a YAML document, without any of its content: the
/// parser's messages quote values (`invalid type: string "<a token>"`), so
/// only the kind of problem, a field name of our own schema, and the
/// position are kept.
fn yaml_problem(e: &serde_norway::Error) -> String {
    let msg = e.to_string();
    // serde_norway prefixes the field path: `users[0].user: invalid type: ...`.
    let body = msg.split(": ").find(|p| {
        ["invalid", "missing field", "unknown", "duplicate"]
            .iter()
            .any(|k| p.starts_with(k))
    });
    let what = match body {
        Some(b) if b.starts_with("missing field `") || b.starts_with("duplicate field `") => {
            // The field name is one of ours (a serde field), not the document's.
            let name = b.split('`').nth(1).unwrap_or("");
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                format!("{} `{name}`", &b[..b.find(" `").unwrap_or(0)])
            } else {
                "a field is missing or repeated".to_owned()
            }
        }
        Some(b) if b.starts_with("invalid type") => "a field has the wrong type".to_owned(),
        Some(b) if b.starts_with("invalid") => "a field has an invalid value".to_owned(),
        Some(_) => "unexpected content".to_owned(),
        None => "syntax error".to_owned(),
    };
    match e.location() {
        Some(l) => format!("{what} at line {} column {}", l.line(), l.column()),
        None => what,
    }
}

fn user_identity(
    name: String,
    u: User,
    refs: &dyn RefReader,
) -> Result<KubeconfigUser, KubeconfigError> {
    let pem = match (&u.client_certificate_data, &u.client_certificate) {
        (Some(b64), _) => Some(
            STANDARD
                .decode(b64.split_whitespace().collect::<String>())
                .map_err(|_| KubeconfigError::CertBase64 { user: name.clone() })?,
        ),
        (None, Some(path)) => refs.read(path),
        (None, None) => None,
    };
    let client_certificate = match pem {
        Some(mut pem) => {
            // A referenced file may hold the key too (kubelet-client-current.pem).
            let id = first_cert_in_pem(&pem);
            super::wipe(&mut pem);
            id.map_err(|source| KubeconfigError::Cert {
                user: name.clone(),
                source,
            })?
        }
        None => None,
    };
    let token_text = match (u.token, &u.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(p)) => refs
            .read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        (None, None) => None,
    };
    let token = token_text
        .filter(|t| !t.trim().is_empty())
        .map(|t| token_identity(&t).0);
    Ok(KubeconfigUser {
        name,
        client_certificate,
        token,
        exec_command: u.exec.and_then(|e| e.command),
        auth_provider: u.auth_provider.and_then(|a| a.name),
        username: u.username,
    })
}

#[cfg(test)]
#[path = "kubeconfig_tests.rs"]
mod kubeconfig_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sha256_hex;
    use std::collections::HashMap;

    struct Files(HashMap<String, Vec<u8>>);
    impl RefReader for Files {
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).cloned()
        }
    }

    fn cert() -> (String, Vec<u8>) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes-admin");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "kubeadm:cluster-admins");
        let key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&key).unwrap();
        (c.pem(), c.der().to_vec())
    }

    #[test]
    fn users_are_identified_without_secrets() {
        let (pem, der) = cert();
        let (kubelet_pem, kubelet_der) = cert();
        let text = format!(
            r#"apiVersion: v1
kind: Config
current-context: admin@k
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: AAAA
contexts:
- name: admin@k
  context: {{cluster: k, user: admin}}
users:
- name: admin
  user:
    client-certificate-data: {}
    client-key-data: c2VjcmV0
- name: bot
  user:
    token: opaque-bot-token
- name: kubelet
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
- name: oidc
  user:
    auth-provider:
      name: oidc
      config: {{id-token: secret}}
- name: eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token]
- name: basic
  user: {{username: alice, password: hunter2}}
"#,
            STANDARD.encode(pem.as_bytes())
        );
        let files = Files(HashMap::from([(
            "/var/lib/kubelet/pki/kubelet-client-current.pem".to_string(),
            kubelet_pem.into_bytes(),
        )]));
        let id = kubeconfig_identity(&text, &files).unwrap();
        assert_eq!(id.current_context.as_deref(), Some("admin@k"));
        assert_eq!(id.servers, vec!["https://127.0.0.1:6443".to_string()]);
        assert_eq!(id.users.len(), 6);
        let admin = id.users[0].client_certificate.as_ref().unwrap();
        assert_eq!(admin.sha256, sha256_hex(&der));
        assert_eq!(admin.subject_cn.as_deref(), Some("kubernetes-admin"));
        assert_eq!(admin.subject_o, vec!["kubeadm:cluster-admins".to_string()]);
        assert_eq!(
            id.users[1].token.as_ref().unwrap().sha256,
            sha256_hex(b"opaque-bot-token")
        );
        assert_eq!(
            id.users[2].client_certificate.as_ref().unwrap().sha256,
            sha256_hex(&kubelet_der)
        );
        assert_eq!(id.users[3].auth_provider.as_deref(), Some("oidc"));
        assert_eq!(id.users[4].exec_command.as_deref(), Some("aws"));
        assert_eq!(id.users[5].username.as_deref(), Some("alice"));
        let json = serde_json::to_string(&id).unwrap();
        for secret in ["c2VjcmV0", "opaque-bot-token", "hunter2", "id-token"] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
    }

    #[test]
    fn malformed_kubeconfigs_get_clear_errors() {
        let e = kubeconfig_identity(" \n", &NoRefs).unwrap_err();
        assert_eq!(e.to_string(), "kubeconfig is empty");
        let e = kubeconfig_identity("users: [unclosed", &NoRefs).unwrap_err();
        assert!(
            e.to_string().starts_with("kubeconfig is not valid YAML"),
            "{e}"
        );
        let e = kubeconfig_identity("kind: Pod\nusers: []\n", &NoRefs).unwrap_err();
        assert_eq!(e.to_string(), "not a kubeconfig: kind is not \"Config\"");
        let e = kubeconfig_identity("apiVersion: v1\nfoo: bar\n", &NoRefs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a kubeconfig: no clusters, contexts or users"
        );
        let e = kubeconfig_identity(
            "users:\n- name: a\n  user:\n    client-certificate-data: '%%%'\n",
            &NoRefs,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("user \"a\": client-certificate-data is not base64"),
            "{e}"
        );
        let e = kubeconfig_identity(
            &format!(
                "users:\n- name: b\n  user:\n    client-certificate-data: {}\n",
                STANDARD.encode("not a pem")
            ),
            &NoRefs,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"b\": client certificate: PEM holds no certificate and no private key"
        );
        let e = kubeconfig_identity("users: 3\n", &NoRefs).unwrap_err();
        assert!(
            e.to_string().starts_with("kubeconfig is not valid YAML"),
            "{e}"
        );
    }

    /// Every value an attacker controls in a malformed kubeconfig or token is
    /// a marker: no error quotes it.
    #[test]
    fn errors_never_quote_the_document() {
        const M: &str = "CTMARKER7f3a";
        let docs = [
            // `user` as a string: a static token where a map belongs.
            format!("users:\n- name: u\n  user: {M}\n"),
            format!("users:\n- name: u\n  user: \"{M}\"\n"),
            format!("users:\n- name: u\n  user:\n    token: {{a: {M}}}\n"),
            format!("users:\n- name: u\n  user:\n    token: [{M}]\n"),
            format!("users:\n- name: u\n  user:\n    client-certificate-data: \"{M}%%\"\n"),
            format!(
                "users:\n- name: u\n  user:\n    client-certificate-data: {}\n",
                STANDARD.encode(format!("-----BEGIN {M}-----\nAAAA\n"))
            ),
            format!(
                "users:\n- name: u\n  user:\n    client-certificate-data: {}\n",
                STANDARD.encode(format!(
                    "-----BEGIN CERTIFICATE-----\n{M}\n-----END CERTIFICATE-----\n"
                ))
            ),
            format!("kind: {M}\nusers: []\n"),
            format!("users: {M}\n"),
            format!("clusters: {M}\n"),
            format!("current-context: [{M}]\nusers: []\n"),
            format!("users:\n- name: u\n  user:\n    exec: {M}\n"),
            format!("users:\n- name: u\n  user:\n    username: [{M}]\n"),
            format!("{M}: [unclosed\n"),
            format!("users:\n- {M}\n"),
        ];
        for d in &docs {
            match kubeconfig_identity(d, &NoRefs) {
                Err(e) => assert!(!e.to_string().contains(M), "{d:?} -> {e}"),
                Ok(k) => assert!(!format!("{k:?}").contains(M), "{d:?}"),
            }
            let id = crate::identity::identify("/k/admin.conf", d.as_bytes(), &NoRefs);
            let e = id.error.unwrap_or_default();
            assert!(!e.contains(M), "{d:?} -> {e}");
        }
    }

    #[test]
    fn a_huge_kubeconfig_gives_a_bounded_identity() {
        let mut text = String::from("clusters:\n");
        for i in 0..100 {
            text.push_str(&format!(
                "- name: c{i}\n  cluster:\n    server: https://{}\n",
                "s".repeat(5000)
            ));
        }
        text.push_str("users:\n");
        for i in 0..100 {
            text.push_str(&format!(
                "- name: {i}{}\n  user:\n    username: {}\n",
                "u".repeat(5000),
                "n".repeat(5000)
            ));
        }
        let k = kubeconfig_identity(&text, &NoRefs).unwrap();
        assert_eq!((k.users.len(), k.servers.len()), (MAX_ENTRIES, MAX_ENTRIES));
        assert!(k.servers.iter().all(|s| s.len() <= MAX_FIELD + 3));
        assert!(k.users.iter().all(|u| {
            u.name.len() <= MAX_FIELD + 3
                && u.username
                    .as_ref()
                    .is_some_and(|n| n.len() <= MAX_FIELD + 3)
        }));
    }
}
