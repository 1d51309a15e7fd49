//! JWT shapes and claims at their limits: the size cap at the byte, the
//! shape test a pod's file must pass to be read as a token, encoders' padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

fn b(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn token(payload: &str) -> String {
    format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(payload))
}

/// Claims of exactly [`MAX_CLAIMS_BYTES`] (as described) are described;
/// one byte more and they are not, and the token is still fingerprinted.
#[test]
fn claims_are_described_up_to_the_cap_and_not_one_byte_more() {
    let sub_of = |n: usize| format!(r#"{{"sub":"{}"}}"#, "s".repeat(n));
    let (small, err) = token_identity(&token(&sub_of(0)));
    assert_eq!(err, None);
    let base = serde_json::to_vec(&small.claims.unwrap()).unwrap().len();
    let fit = MAX_CLAIMS_BYTES - base;
    let t = token(&sub_of(fit));
    let (id, err) = token_identity(&t);
    assert_eq!(err, None);
    let claims = id.claims.unwrap();
    assert_eq!(serde_json::to_vec(&claims).unwrap().len(), MAX_CLAIMS_BYTES);
    assert_eq!(claims.sub.map(|s| s.len()), Some(fit));
    assert_eq!(id.sha256, sha256_hex(t.as_bytes()));
    let t = token(&sub_of(fit + 1));
    let (id, err) = token_identity(&t);
    assert_eq!(id.claims, None);
    assert_eq!(
        err,
        Some(JwtError::ClaimsTooLarge {
            max: MAX_CLAIMS_BYTES
        })
    );
    assert_eq!(id.sha256, sha256_hex(t.as_bytes()));
    assert_eq!(MAX_CLAIMS_BYTES, 8192);
}

#[test]
fn only_a_compact_jws_shape_looks_like_a_jwt() {
    let t = token("{}");
    assert!(looks_like_jwt(&t));
    assert!(looks_like_jwt(&format!("\n {t} \n")));
    assert!(looks_like_jwt("eyJ.a.b"));
    // Not `eyJ` (a JSON object's base64url) at the start.
    assert!(!looks_like_jwt("abc.def.ghi"));
    // Two or four parts.
    assert!(!looks_like_jwt("eyJhbGciOiJub25lIn0.e30"));
    assert!(!looks_like_jwt(&format!("{t}.x")));
    // Whitespace inside: two tokens, or a sentence.
    assert!(!looks_like_jwt("eyJ.a b.c"));
    assert!(!looks_like_jwt("eyJ.a.b\neyJ.c.d"));
    assert!(!looks_like_jwt(""));
}

/// Some encoders keep base64 padding; the claims are read all the same.
#[test]
fn padded_parts_are_read() {
    let padded = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
    // 16 bytes: base64 pads them with `==`.
    let header = padded(r#"{"alg":"ES256" }"#);
    let payload = padded(r#"{"sub":"system:serviceaccount:a:b","iat":1.9}"#);
    assert!(header.ends_with("=="), "{header}");
    let c = parse_claims(&format!("{header}.{payload}.sig")).unwrap();
    assert_eq!(c.sub.as_deref(), Some("system:serviceaccount:a:b"));
    // NumericDate fractions are dropped.
    assert_eq!(c.iat, Some(1));
}

/// The reason names the kind of JSON problem and its column, nothing of
/// the content.
#[test]
fn json_errors_say_the_kind_of_problem_and_where() {
    let e = parse_claims(&format!("{}.{}.s", b(r#"{"alg":"x""#), b("{}"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a JWT: header is not a JSON object (ends early at column 10)"
    );
    let e = parse_claims(&format!(
        "{}.{}.s",
        b(r#"{"alg":"x"}"#),
        b(r#"{"exp":"soon"}"#)
    ))
    .unwrap_err();
    assert!(
        e.to_string().starts_with(
            "not a JWT: payload is not a JSON object (a claim has the wrong type at column"
        ),
        "{e}"
    );
    let e = parse_claims(&format!("{}.{}.s", b(r#"{"alg" "x"}"#), b("{}"))).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("not a JWT: header is not a JSON object (syntax error at column"),
        "{e}"
    );
    assert_eq!(
        parse_claims(&format!("{}.!!.s", b(r#"{"alg":"x"}"#))),
        Err(JwtError::Base64 { part: "payload" })
    );
}

/// An audience as a single string or a list; none at all is no audience.
#[test]
fn audiences_in_every_form() {
    let aud = |p: &str| parse_claims(&token(p)).unwrap().aud;
    assert_eq!(aud(r#"{"aud":"api"}"#), vec!["api".to_string()]);
    assert_eq!(
        aud(r#"{"aud":["api","vault"]}"#),
        vec!["api".to_string(), "vault".to_string()]
    );
    assert_eq!(aud("{}"), Vec::<String>::new());
}
