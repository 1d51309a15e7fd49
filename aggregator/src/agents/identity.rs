//! Which node a client certificate speaks for.
//!
//! Decision (also stated in agent.proto):
//! an agent's certificate names its node the way a kubelet's does, in the
//! subject common name `system:node:<name>`. Subject alternative names are not
//! consulted. The chain itself was already verified against the agents' CA by
//! the TLS layer before any request reaches the service.

/// Why a peer certificate does not identify a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("client certificate could not be parsed: {0}")]
    Unparsable(String),
    #[error("client certificate has no subject common name")]
    NoCommonName,
    #[error("client certificate subject CN {0:?} is not of the form system:node:<name>")]
    NotANode(String),
}

/// Prefix of a node identity's common name.
pub const NODE_CN_PREFIX: &str = "system:node:";

/// The node named by the DER certificate `der`.
pub fn node_from_cert(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoCommonName)?;
    let cn = cn
        .as_str()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    match cn.strip_prefix(NODE_CN_PREFIX) {
        Some(node) if !node.is_empty() => Ok(node.to_string()),
        _ => Err(IdentityError::NotANode(cn.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn node_name_comes_from_the_common_name() {
        assert_eq!(
            node_from_cert(&cert("system:node:node-a")).unwrap(),
            "node-a"
        );
        assert_eq!(
            node_from_cert(&cert("alice")).unwrap_err(),
            IdentityError::NotANode("alice".into())
        );
        assert_eq!(
            node_from_cert(&cert("system:node:")).unwrap_err(),
            IdentityError::NotANode("system:node:".into())
        );
        assert!(matches!(
            node_from_cert(b"garbage").unwrap_err(),
            IdentityError::Unparsable(_)
        ));
    }
}
