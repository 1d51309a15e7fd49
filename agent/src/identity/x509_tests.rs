//! PEM files as a pod may leave them: certificates and keys of every PEM
//! type, blocks that are no credential, and broken PEM named by its kind.

use super::*;

fn cert_with(cn: Option<&str>, org: &str) -> (String, Vec<u8>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    params.not_before = rcgen::date_time_ymd(2026, 1, 2);
    params.not_after = rcgen::date_time_ymd(2027, 3, 4);
    let key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&key).unwrap();
    (c.pem(), c.der().to_vec(), key.serialize_pem())
}

fn block(label: &str) -> String {
    format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n")
}

#[test]
fn validity_and_an_absent_common_name_are_read_exactly() {
    let (_, der, _) = cert_with(None, "system:masters");
    let id = cert_identity(&der).unwrap();
    assert_eq!(id.subject_cn, None);
    assert_eq!(id.issuer_cn, None);
    assert_eq!(id.subject_o, vec!["system:masters".to_string()]);
    assert_eq!(
        id.not_before.unwrap().to_rfc3339(),
        "2026-01-02T00:00:00+00:00"
    );
    assert_eq!(
        id.not_after.unwrap().to_rfc3339(),
        "2027-03-04T00:00:00+00:00"
    );
}

/// Certificates and private keys of every PEM type are counted; a key's
/// bytes are not kept.
#[test]
fn certificates_and_keys_of_every_type_are_counted() {
    let (pem, der, key) = cert_with(Some("admin"), "o");
    let p = parse_pem(pem.as_bytes()).unwrap();
    assert_eq!((p.certs.clone(), p.keys), (vec![der.clone()], 0));
    let p = parse_pem(key.as_bytes()).unwrap();
    assert_eq!((p.certs.len(), p.keys), (0, 1));
    let keys = format!(
        "{}{}{key}",
        block("RSA PRIVATE KEY"),
        block("EC PRIVATE KEY")
    );
    let p = parse_pem(keys.as_bytes()).unwrap();
    assert_eq!((p.certs.len(), p.keys), (0, 3));
    let all = format!("{key}{pem}{pem}");
    let p = parse_pem(all.as_bytes()).unwrap();
    assert_eq!((p.certs, p.keys), (vec![der.clone(), der], 1));
    // A key alone has no certificate to identify.
    assert_eq!(first_cert_in_pem(key.as_bytes()).unwrap(), None);
}

/// A file of PEM blocks that are no credential (a CRL, a CSR) is refused.
#[test]
fn blocks_that_are_no_credential_are_refused() {
    let only = format!("{}{}", block("X509 CRL"), block("CERTIFICATE REQUEST"));
    assert_eq!(parse_pem(only.as_bytes()).unwrap_err(), CertError::NoBlocks);
    assert_eq!(
        first_cert_in_pem(only.as_bytes()).unwrap_err(),
        CertError::NoBlocks
    );
}

/// Each kind of broken PEM has its own message, quoting nothing.
#[test]
fn broken_pem_is_named_by_its_kind() {
    let no_end = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
    assert_eq!(
        parse_pem(no_end).unwrap_err().to_string(),
        "PEM does not parse: a section has no END line"
    );
    let wrong_end = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        parse_pem(wrong_end).unwrap_err().to_string(),
        "PEM does not parse: a section has no END line"
    );
    let bad_begin = b"-----BEGIN CERTIFICATE\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(
        parse_pem(bad_begin).unwrap_err().to_string(),
        "PEM does not parse: a BEGIN line is malformed"
    );
    let not_b64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert_eq!(
        parse_pem(not_b64).unwrap_err().to_string(),
        "PEM does not parse: a section is not base64"
    );
}

#[test]
fn only_text_starting_with_a_begin_line_looks_like_pem() {
    assert!(looks_like_pem(b"-----BEGIN CERTIFICATE-----\n"));
    assert!(looks_like_pem(b"\r\n\t -----BEGIN X"));
    assert!(!looks_like_pem(b"hello -----BEGIN CERTIFICATE-----"));
    assert!(!looks_like_pem(b"-----BEGINCERTIFICATE"));
    assert!(!looks_like_pem(b""));
}
