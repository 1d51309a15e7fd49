//! JWT (service-account token) claims, read without verifying the signature.
//!
//! The agent only needs to *identify* a token: its claims say whose it is and
//! which pod and node it was bound to. The signature is not checked (the agent
//! holds no keys); the token's bytes are hashed and dropped.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credtrail_proto::model::{JwtClaims, TokenIdentity};
use serde::Deserialize;

use super::sha256_hex;

/// Why a string is not a readable JWT.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is empty")]
    Empty,
    #[error("not a JWT: expected 3 dot-separated parts, found {found}")]
    Parts { found: usize },
    /// No detail: a decoder's message quotes the offending byte.
    #[error("not a JWT: {part} is not base64url")]
    Base64 { part: &'static str },
    /// `reason` is the kind of problem and its position, never content.
    #[error("not a JWT: {part} is not a JSON object ({reason})")]
    Json { part: &'static str, reason: String },
    #[error("not a JWT: header has no \"alg\"")]
    NoAlg,
    /// Claims are described only when small (real ones are a few hundred bytes).
    #[error("JWT claims are larger than {max} bytes: not described")]
    ClaimsTooLarge { max: usize },
}

/// Largest encoded claims described in an observation.
pub const MAX_CLAIMS_BYTES: usize = 8 << 10;

/// A token's fingerprint and, when it is a JWT, its claims; `Err` carries the
/// fingerprint too, so an opaque token is still identified.
pub fn token_identity(token: &str) -> (TokenIdentity, Option<JwtError>) {
    let token = token.trim();
    let sha256 = sha256_hex(token.as_bytes());
    let parsed = parse_claims(token).and_then(|c| {
        let size = serde_json::to_vec(&c).map_or(usize::MAX, |v| v.len());
        if size > MAX_CLAIMS_BYTES {
            Err(JwtError::ClaimsTooLarge {
                max: MAX_CLAIMS_BYTES,
            })
        } else {
            Ok(c)
        }
    });
    match parsed {
        Ok(claims) => (
            TokenIdentity {
                sha256,
                claims: Some(claims),
            },
            None,
        ),
        Err(e) => (
            TokenIdentity {
                sha256,
                claims: None,
            },
            Some(e),
        ),
    }
}

/// True when `s` has the shape of a compact JWS (`eyJ...`.`...`.`...`).
pub fn looks_like_jwt(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("eyJ") && s.split('.').count() == 3 && !s.contains(char::is_whitespace)
}

/// Decodes the claims of a compact JWT (`header.payload.signature`).
pub fn parse_claims(token: &str) -> Result<JwtClaims, JwtError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(JwtError::Empty);
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Parts { found: parts.len() });
    }
    let header: serde_json::Map<String, serde_json::Value> = decode_part("header", parts[0])?;
    if !header.contains_key("alg") {
        return Err(JwtError::NoAlg);
    }
    let raw: RawClaims = decode_part("payload", parts[1])?;
    Ok(raw.into_claims())
}

fn decode_part<T: serde::de::DeserializeOwned>(
    part: &'static str,
    b64: &str,
) -> Result<T, JwtError> {
    // Tolerate padding some encoders add.
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| JwtError::Base64 { part })?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Json {
        part,
        // serde_json's message quotes values (`invalid type: string "..."`).
        reason: format!(
            "{} at column {}",
            match e.classify() {
                serde_json::error::Category::Io => "read error",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "a claim has the wrong type",
                serde_json::error::Category::Eof => "ends early",
            },
            e.column()
        ),
    })
}

/// `aud` is a string or an array of strings.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

#[derive(Deserialize, Default)]
struct NameUid {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uid: Option<String>,
}

#[derive(Deserialize, Default)]
struct KubeClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    pod: Option<NameUid>,
    #[serde(default)]
    node: Option<NameUid>,
    #[serde(default)]
    serviceaccount: Option<NameUid>,
}

#[derive(Deserialize, Default)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Audience,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubeClaims>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/secret.name")]
    legacy_secret: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_sa_name: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_sa_uid: Option<String>,
}

impl RawClaims {
    fn into_claims(self) -> JwtClaims {
        let k = self.kubernetes.unwrap_or_default();
        let (pod_name, pod_uid) = split(k.pod);
        let (node_name, node_uid) = split(k.node);
        let (sa_name, sa_uid) = split(k.serviceaccount);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "NumericDate seconds fit in i64; fractions are dropped on purpose"
        )]
        let secs = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|v| v as i64);
        JwtClaims {
            iss: self.iss,
            sub: self.sub,
            aud: match self.aud {
                Audience::One(a) => vec![a],
                Audience::Many(a) => a,
                Audience::None => Vec::new(),
            },
            jti: self.jti,
            iat: secs(self.iat),
            nbf: secs(self.nbf),
            exp: secs(self.exp),
            namespace: k.namespace.or(self.legacy_namespace),
            service_account_name: sa_name.or(self.legacy_sa_name),
            service_account_uid: sa_uid.or(self.legacy_sa_uid),
            pod_name,
            pod_uid,
            node_name,
            node_uid,
            secret_name: self.legacy_secret,
        }
    }
}

fn split(v: Option<NameUid>) -> (Option<String>, Option<String>) {
    v.map(|v| (v.name, v.uid)).unwrap_or_default()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod jwt_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn projected_token_claims_are_read() {
        let t = jwt(
            r#"{"aud":["https://kubernetes.default.svc"],"exp":1795000000,"iat":1794996400,
            "iss":"https://kubernetes.default.svc","jti":"7f0c2a0e-1111-4a4a-9b9b-0123456789ab",
            "kubernetes.io":{"namespace":"payments","node":{"name":"node-a","uid":"n-uid"},
            "pod":{"name":"api-0","uid":"p-uid"},"serviceaccount":{"name":"api","uid":"sa-uid"},
            "warnafter":1794999000},"nbf":1794996400,"sub":"system:serviceaccount:payments:api"}"#,
        );
        let c = parse_claims(&format!("{t}\n")).unwrap();
        assert_eq!(c.aud, vec!["https://kubernetes.default.svc".to_string()]);
        assert_eq!(c.exp, Some(1_795_000_000));
        assert_eq!(c.iat, Some(1_794_996_400));
        assert_eq!(c.nbf, Some(1_794_996_400));
        assert_eq!(
            c.jti.as_deref(),
            Some("7f0c2a0e-1111-4a4a-9b9b-0123456789ab")
        );
        assert_eq!(c.namespace.as_deref(), Some("payments"));
        assert_eq!(c.pod_name.as_deref(), Some("api-0"));
        assert_eq!(c.pod_uid.as_deref(), Some("p-uid"));
        assert_eq!(c.node_name.as_deref(), Some("node-a"));
        assert_eq!(c.node_uid.as_deref(), Some("n-uid"));
        assert_eq!(c.service_account_name.as_deref(), Some("api"));
        assert_eq!(c.service_account_uid.as_deref(), Some("sa-uid"));
        assert_eq!(c.sub.as_deref(), Some("system:serviceaccount:payments:api"));
        assert_eq!(c.secret_name, None);
    }

    #[test]
    fn legacy_secret_token_claims_are_read() {
        let t = jwt(
            r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"kube-system",
            "kubernetes.io/serviceaccount/secret.name":"old-token-abcde",
            "kubernetes.io/serviceaccount/service-account.name":"old",
            "kubernetes.io/serviceaccount/service-account.uid":"u1","sub":"system:serviceaccount:kube-system:old","aud":"x"}"#,
        );
        let c = parse_claims(&t).unwrap();
        assert_eq!(c.namespace.as_deref(), Some("kube-system"));
        assert_eq!(c.secret_name.as_deref(), Some("old-token-abcde"));
        assert_eq!(c.service_account_name.as_deref(), Some("old"));
        assert_eq!(c.service_account_uid.as_deref(), Some("u1"));
        assert_eq!(c.aud, vec!["x".to_string()]);
        assert_eq!(c.jti, None);
    }

    #[test]
    fn malformed_tokens_get_clear_errors() {
        assert_eq!(parse_claims("  \n"), Err(JwtError::Empty));
        assert_eq!(parse_claims("abc.def"), Err(JwtError::Parts { found: 2 }));
        assert_eq!(parse_claims("a.b.c.d"), Err(JwtError::Parts { found: 4 }));
        let e = parse_claims("e$$.eyJ9.sig").unwrap_err();
        assert!(matches!(e, JwtError::Base64 { part: "header", .. }), "{e}");
        assert!(e.to_string().contains("header is not base64url"), "{e}");
        let not_json = format!(
            "{}.{}.s",
            URL_SAFE_NO_PAD.encode("{\"alg\":\"x\"}"),
            URL_SAFE_NO_PAD.encode("[1,2")
        );
        let e = parse_claims(&not_json).unwrap_err();
        assert!(
            e.to_string().contains("payload is not a JSON object"),
            "{e}"
        );
        let no_alg = format!(
            "{}.{}.s",
            URL_SAFE_NO_PAD.encode("{}"),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(parse_claims(&no_alg), Err(JwtError::NoAlg));
        let array_payload = format!(
            "{}.{}.s",
            URL_SAFE_NO_PAD.encode("{\"alg\":\"x\"}"),
            URL_SAFE_NO_PAD.encode("[1]")
        );
        assert!(
            parse_claims(&array_payload)
                .unwrap_err()
                .to_string()
                .contains("payload")
        );
    }

    #[test]
    fn opaque_token_is_fingerprinted_with_error() {
        let (id, err) = token_identity("  opaque-static-token\n");
        assert_eq!(id.sha256, sha256_hex(b"opaque-static-token"));
        assert_eq!(id.claims, None);
        assert_eq!(err, Some(JwtError::Parts { found: 1 }));
        assert!(!looks_like_jwt("opaque-static-token"));
        assert!(looks_like_jwt(&jwt("{}")));
    }

    /// Malformed tokens whose every part is a marker: no error quotes it.
    #[test]
    fn errors_never_quote_the_token() {
        const M: &str = "CTMARKER7f3a";
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let tokens = [
            M.to_owned(),
            format!("{M}.{M}.{M}"),
            format!("{M}!.x.y"),
            format!("{}.{}.sig", b(&format!("{{\"alg\":\"{M}\"")), b("{}")),
            format!("{}.{}.sig", b(&format!("[\"{M}\"]")), b("{}")),
            format!(
                "{}.{}.sig",
                b("{\"alg\":\"RS256\"}"),
                b(&format!("{{\"sub\":[\"{M}\"]}}"))
            ),
            format!(
                "{}.{}.sig",
                b("{\"alg\":\"RS256\"}"),
                b(&format!("{{\"exp\":\"{M}\"}}"))
            ),
            format!(
                "{}.{}.sig",
                b("{\"alg\":\"RS256\"}"),
                b(&format!("{{\"iat\":{{\"{M}\":1}}}}"))
            ),
            format!("{}.{}.sig", b("{\"alg\":\"RS256\"}"), b(M)),
            format!(
                "{}.{}.{M}",
                b("{\"alg\":\"RS256\"}"),
                b(&format!("{{\"aud\":{{\"x\":\"{M}\"}}}}"))
            ),
        ];
        for t in &tokens {
            let (id, err) = token_identity(t);
            if let Some(e) = err {
                assert!(!e.to_string().contains(M), "{t:?} -> {e}");
            }
            assert!(!id.sha256.contains(M));
        }
    }

    #[test]
    fn huge_claims_are_not_described() {
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.sig",
            b("{\"alg\":\"RS256\"}"),
            b(&format!("{{\"sub\":\"{}\"}}", "s".repeat(20_000)))
        );
        let (id, err) = token_identity(&t);
        assert_eq!(id.claims, None);
        assert_eq!(
            err,
            Some(JwtError::ClaimsTooLarge {
                max: MAX_CLAIMS_BYTES
            })
        );
    }
}
