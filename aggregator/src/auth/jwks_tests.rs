use super::*;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

/// An EC P-256 key pair: the signer and its public JWK.
struct Signer {
    kid: String,
    enc: EncodingKey,
    jwk: serde_json::Value,
}

fn signer(kid: &str) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Signer {
        kid: kid.into(),
        enc: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                    "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
    }
}

impl Signer {
    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }
}

fn set(signers: &[&Signer]) -> Vec<u8> {
    serde_json::to_vec(&json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}))
        .unwrap()
}

fn claims(aud: &str, exp_in: i64) -> serde_json::Value {
    let now = now_secs() as i64;
    json!({"iss": "https://kubernetes.default.svc", "aud": [aud], "sub": "system:serviceaccount:credtrail:credtrail-agent",
           "iat": now, "nbf": now, "exp": now + exp_in})
}

fn expect() -> Expect {
    let mut e = Expect::new(
        vec!["https://kubernetes.default.svc".into()],
        vec!["credtrail".into()],
    );
    e.max_lifetime = Some(Duration::from_secs(24 * 3600));
    e
}

#[test]
fn a_valid_token_verifies_and_forgeries_are_refused() {
    let good = signer("k1");
    let keys = Jwks::from_json(&set(&[&good])).unwrap();
    let e = expect();
    let c: serde_json::Value = keys
        .verify(&good.sign(&claims("credtrail", 600)), &e)
        .unwrap();
    assert_eq!(c["sub"], "system:serviceaccount:credtrail:credtrail-agent");

    // Another key claiming the same kid.
    let forger = signer("k1");
    assert_eq!(
        keys.verify::<serde_json::Value>(&forger.sign(&claims("credtrail", 600)), &e),
        Err(JwtError::Signature)
    );
    // An unknown kid.
    assert!(matches!(
        keys.verify::<serde_json::Value>(&signer("k9").sign(&claims("credtrail", 600)), &e),
        Err(JwtError::UnknownKey(_))
    ));
    assert_eq!(
        keys.verify::<serde_json::Value>(&good.sign(&claims("vault", 600)), &e),
        Err(JwtError::Audience)
    );
    assert_eq!(
        keys.verify::<serde_json::Value>(&good.sign(&claims("credtrail", -600)), &e),
        Err(JwtError::Expired)
    );
    let mut other_iss = claims("credtrail", 600);
    other_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        keys.verify::<serde_json::Value>(&good.sign(&other_iss), &e),
        Err(JwtError::Issuer)
    );
    // A year-long token is refused when a lifetime cap is set.
    assert!(matches!(
        keys.verify::<serde_json::Value>(&good.sign(&claims("credtrail", 365 * 86400)), &e),
        Err(JwtError::Lifetime { .. })
    ));
    let mut no_exp = claims("credtrail", 600);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        keys.verify::<serde_json::Value>(&good.sign(&no_exp), &e),
        Err(JwtError::MissingClaim(_))
    ));
}

#[test]
fn algorithm_confusion_and_garbage_are_refused() {
    let good = signer("k1");
    let keys = Jwks::from_json(&set(&[&good])).unwrap();
    let e = expect();
    // HS256 signed with the public key's bytes as the secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let secret = serde_json::to_vec(&good.jwk).unwrap();
    let hs = jsonwebtoken::encode(
        &h,
        &claims("credtrail", 600),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert!(matches!(
        keys.verify::<serde_json::Value>(&hs, &e),
        Err(JwtError::Algorithm(_))
    ));
    // alg none, unsigned.
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"})),
        b64(claims("credtrail", 600))
    );
    assert!(keys.verify::<serde_json::Value>(&none, &e).is_err());
    for junk in ["", "a.b.c", "....", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
        assert!(
            keys.verify::<serde_json::Value>(junk, &e).is_err(),
            "{junk:.20}"
        );
    }
    // A set with only a symmetric key is refused as a key set.
    let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
    assert!(matches!(
        Jwks::from_json(oct.to_string().as_bytes()),
        Err(JwksError::Empty)
    ));
    assert!(Jwks::from_json(b"not json").is_err());
}

#[test]
fn the_file_reloads_on_change_and_keeps_the_old_keys_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let (old, new) = (signer("old"), signer("new"));
    std::fs::write(&path, set(&[&old])).unwrap();
    let file = JwksFile::open(&path).unwrap();
    let e = expect();
    let t_old = old.sign(&claims("credtrail", 600));
    let t_new = new.sign(&claims("credtrail", 600));
    assert!(file.verify::<serde_json::Value>(&t_old, &e).is_ok());
    assert!(file.verify::<serde_json::Value>(&t_new, &e).is_err());

    // The issuer rotates: both keys published for the overlap.
    std::fs::write(&path, set(&[&old, &new])).unwrap();
    file.reload_now();
    assert!(file.verify::<serde_json::Value>(&t_new, &e).is_ok());
    assert!(file.verify::<serde_json::Value>(&t_old, &e).is_ok());

    // A broken file keeps the previous keys and is counted.
    std::fs::write(&path, b"{\"keys\": [").unwrap();
    file.reload_now();
    assert_eq!(file.reload_failures(), 1);
    assert!(file.verify::<serde_json::Value>(&t_new, &e).is_ok());

    // The old key retired.
    std::fs::write(&path, set(&[&new])).unwrap();
    file.reload_now();
    assert!(file.verify::<serde_json::Value>(&t_old, &e).is_err());
    assert!(file.verify::<serde_json::Value>(&t_new, &e).is_ok());
}
