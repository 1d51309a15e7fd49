//! Certificates by fingerprint and subject (x509-parser), and PEM splitting.

use chrono::{DateTime, Utc};
use credtrail_proto::model::CertIdentity;
use rustls_pemfile::Item;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::sha256_hex;

/// Why bytes are not a readable certificate or PEM file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error("certificate DER is empty")]
    Empty,
    #[error("certificate DER does not parse as X.509: {0}")]
    Der(String),
    #[error("certificate DER has {0} trailing bytes")]
    Trailing(usize),
    #[error("PEM does not parse: {0}")]
    Pem(String),
    #[error("PEM holds no certificate and no private key")]
    NoBlocks,
}

/// The identity of one DER certificate: `X509SHA256` fingerprint, subject, issuer, validity.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, CertError> {
    if der.is_empty() {
        return Err(CertError::Empty);
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::Trailing(rest.len()));
    }
    let validity = cert.validity();
    Ok(CertIdentity {
        sha256: sha256_hex(der),
        subject_cn: first_cn(cert.subject()),
        subject_o: cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect(),
        issuer_cn: first_cn(cert.issuer()),
        not_before: DateTime::<Utc>::from_timestamp(validity.not_before.timestamp(), 0),
        not_after: DateTime::<Utc>::from_timestamp(validity.not_after.timestamp(), 0),
    })
}

fn first_cn(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok().map(str::to_owned))
}

/// What a PEM file holds: certificate DERs (in order) and a count of private keys.
/// Key bytes are dropped as soon as they are counted.
#[derive(Debug, Default)]
pub struct PemContents {
    pub certs: Vec<Vec<u8>>,
    pub keys: usize,
}

/// True when the bytes start (after whitespace) like a PEM block.
pub fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN ")
}

/// Splits a PEM file into certificates and (counted, dropped) private keys.
pub fn parse_pem(bytes: &[u8]) -> Result<PemContents, CertError> {
    let mut out = PemContents::default();
    let mut rest = bytes;
    loop {
        match rustls_pemfile::read_one_from_slice(rest) {
            Ok(Some((item, tail))) => {
                match item {
                    Item::X509Certificate(der) => out.certs.push(der.to_vec()),
                    Item::Pkcs1Key(_) | Item::Pkcs8Key(_) | Item::Sec1Key(_) => out.keys += 1,
                    _ => {}
                }
                rest = tail;
            }
            Ok(None) => break,
            // The parser's error quotes the document's own markers: only its kind.
            Err(e) => return Err(CertError::Pem(pem_problem(&e).to_owned())),
        }
    }
    if out.certs.is_empty() && out.keys == 0 {
        return Err(CertError::NoBlocks);
    }
    Ok(out)
}

/// Identity of the first certificate of a PEM file.
pub fn first_cert_in_pem(bytes: &[u8]) -> Result<Option<CertIdentity>, CertError> {
    let pem = parse_pem(bytes)?;
    pem.certs.first().map(|d| cert_identity(d)).transpose()
}

/// The kind of a PEM parse error, without the bytes it quotes.
fn pem_problem(e: &rustls_pemfile::Error) -> &'static str {
    match e {
        rustls_pemfile::Error::MissingSectionEnd { .. } => "a section has no END line",
        rustls_pemfile::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        rustls_pemfile::Error::Base64Decode(_) => "a section is not base64",
    }
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod x509_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn client_cert() -> (String, Vec<u8>, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:node-a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec(), key.serialize_pem())
    }

    #[test]
    fn certificate_fingerprint_and_subject() {
        let (pem, der, key_pem) = client_cert();
        let id = cert_identity(&der).unwrap();
        assert_eq!(id.sha256, sha256_hex(&der));
        assert_eq!(
            id.credential_id(),
            format!("X509SHA256={}", sha256_hex(&der))
        );
        assert_eq!(id.subject_cn.as_deref(), Some("system:node:node-a"));
        assert_eq!(id.subject_o, vec!["system:nodes".to_string()]);
        assert_eq!(id.issuer_cn.as_deref(), Some("system:node:node-a"));
        assert!(id.not_before.unwrap() < id.not_after.unwrap());
        let both = format!("{pem}{key_pem}");
        let parsed = parse_pem(both.as_bytes()).unwrap();
        assert_eq!(parsed.certs, vec![der.clone()]);
        assert_eq!(parsed.keys, 1);
        assert_eq!(first_cert_in_pem(both.as_bytes()).unwrap(), Some(id));
        assert!(looks_like_pem(b"\n -----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn malformed_certificates_get_clear_errors() {
        assert_eq!(cert_identity(b""), Err(CertError::Empty));
        let e = cert_identity(b"\x30\x03\x02\x01").unwrap_err();
        assert!(
            e.to_string().starts_with("certificate DER does not parse"),
            "{e}"
        );
        let (_, mut der, _) = client_cert();
        der.extend_from_slice(b"xx");
        assert_eq!(cert_identity(&der), Err(CertError::Trailing(2)));
        assert_eq!(parse_pem(b"hello").unwrap_err(), CertError::NoBlocks);
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = parse_pem(bad).unwrap_err();
        assert!(e.to_string().starts_with("PEM does not parse"), "{e}");
        let garbage = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        let e = first_cert_in_pem(garbage).unwrap_err();
        assert!(e.to_string().contains("does not parse as X.509"), "{e}");
    }
}
