//! Throw-away PKI for tests and the demo (rcgen).
//!
//! Three certificate authorities, as in a real cluster:
//! - the **agents CA** signs each node agent's client certificate
//!   (subject CN `system:node:<name>`, O `system:nodes`, like a kubelet's);
//! - the **server CA** signs the aggregator's and the API server's serving
//!   certificates (SANs: `localhost` plus the 127.x addresses given);
//! - the **cluster CA** signs users' client certificates for the API server
//!   (CN = user name, O = groups), as `kubectl` users hold them.
//!
//! Everything lives in memory until [`Pki::write`] puts it in a directory;
//! keys are written with mode 0600.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};

/// Errors making or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate for {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key, even in a test failure.
        f.debug_struct("CertKey")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// Lowercase hex SHA-256 of the DER: the `X509SHA256=` credential id.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }
}

/// A certificate authority that can sign leaf certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    name: String,
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Generate {
        what: what.to_string(),
        source,
    }
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

impl Ca {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err(cn))?;
        params.distinguished_name = dn(cn, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(gen_err(cn))?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(gen_err(cn))?;
        Ok(Self {
            issuer,
            name: cn.to_string(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's name (subject CN).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn leaf(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertKey, CertError> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(gen_err(cn))?;
        params.distinguished_name = dn(cn, orgs);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().map_err(gen_err(cn))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err(cn))?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// A TLS server certificate for `sans` (DNS names or IP addresses).
    pub fn server(&self, cn: &str, sans: &[&str]) -> Result<CertKey, CertError> {
        self.leaf(cn, &[], sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A TLS client certificate with subject CN `cn` and O `orgs`.
    pub fn client(&self, cn: &str, orgs: &[&str]) -> Result<CertKey, CertError> {
        self.leaf(cn, orgs, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A node agent's client certificate: CN `system:node:<node>`, O `system:nodes`.
    pub fn agent(&self, node: &str) -> Result<CertKey, CertError> {
        self.client(&format!("system:node:{node}"), &["system:nodes"])
    }
}

/// The whole throw-away PKI of a test or the demo.
pub struct Pki {
    pub agents_ca: Ca,
    pub server_ca: Ca,
    pub cluster_ca: Ca,
    /// Serving certificate used by the aggregator and the API-server simulator.
    pub server: CertKey,
}

/// Where [`Pki::write`] put the shared files.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub agents_ca: PathBuf,
    pub server_ca: PathBuf,
    pub cluster_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Paths of one written certificate and key.
#[derive(Debug, Clone)]
pub struct CertKeyPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::write(path, data).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)
}

impl Pki {
    /// New CAs and a serving certificate valid for `localhost` and `server_ips`.
    pub fn generate(server_ips: &[&str]) -> Result<Self, CertError> {
        let agents_ca = Ca::new("credtrail agents CA")?;
        let server_ca = Ca::new("credtrail server CA")?;
        let cluster_ca = Ca::new("kubernetes")?;
        let mut sans = vec!["localhost"];
        sans.extend_from_slice(server_ips);
        let server = server_ca.server("credtrail-server", &sans)?;
        Ok(Self {
            agents_ca,
            server_ca,
            cluster_ca,
            server,
        })
    }

    /// Writes the CA certificates and the serving certificate and key into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PkiPaths, CertError> {
        fs::create_dir_all(dir).map_err(|source| CertError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = PkiPaths {
            dir: dir.to_path_buf(),
            agents_ca: dir.join("agents-ca.pem"),
            server_ca: dir.join("server-ca.pem"),
            cluster_ca: dir.join("cluster-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        };
        write(&p.agents_ca, &self.agents_ca.cert_pem(), 0o644)?;
        write(&p.server_ca, &self.server_ca.cert_pem(), 0o644)?;
        write(&p.cluster_ca, &self.cluster_ca.cert_pem(), 0o644)?;
        write(&p.server_cert, &self.server.cert_pem, 0o644)?;
        write(&p.server_key, &self.server.key_pem, 0o600)?;
        Ok(p)
    }
}

/// Writes `ck` as `<dir>/<name>.pem` and `<dir>/<name>-key.pem` (0600).
pub fn write_cert_key(dir: &Path, name: &str, ck: &CertKey) -> Result<CertKeyPaths, CertError> {
    let p = CertKeyPaths {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    write(&p.cert, &ck.cert_pem, 0o644)?;
    write(&p.key, &ck.key_pem, 0o600)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_cert_names_the_node_and_chains_to_its_ca() {
        let ca = Ca::new("agents").unwrap();
        let ck = ca.agent("node-a").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "system:node:node-a");
        let o = cert.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), "system:nodes");
        let ca_der = rustls_pemfile::certs(&mut ca.cert_pem().as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        // The signature itself is checked by every mTLS test; here, the naming.
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert_eq!(ck.sha256_hex().len(), 64);
        assert!(!format!("{ck:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn written_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(&["127.0.0.1"]).unwrap();
        let p = pki.write(dir.path()).unwrap();
        let mode = fs::metadata(&p.server_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            fs::read_to_string(&p.server_cert)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
    }
}
