//! Client certificates on the query listeners: the TLS layer verifies the
//! chain against `--api-client-ca`; here the verified certificate's subject
//! is mapped to a role by `--api-cert-role` rules (`CN=<name>:<role>` or
//! `O=<group>:<role>`; the highest matching role wins). A certificate that no
//! rule names authenticates nobody. The principal is `cert:<CN>`.

use super::{Method, Principal, Role};

/// Which subject attribute a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    CommonName,
    Organization,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    attr: Attr,
    value: String,
    role: Role,
}

/// The subject → role rules.
#[derive(Debug, Clone, Default)]
pub struct CertRoles {
    rules: Vec<Rule>,
}

/// A rule that does not parse; names it.
#[derive(Debug, thiserror::Error)]
#[error("--api-cert-role {spec:?}: {why}")]
pub struct CertRoleError {
    spec: String,
    why: &'static str,
}

impl CertRoles {
    pub fn parse(specs: &[String]) -> Result<Self, CertRoleError> {
        let mut rules = Vec::new();
        for spec in specs {
            let bad = |why| CertRoleError {
                spec: spec.clone(),
                why,
            };
            let (subject, role) = spec
                .rsplit_once(':')
                .ok_or_else(|| bad("expected CN=<name>:<role> or O=<group>:<role>"))?;
            let role = Role::parse(role)
                .ok_or_else(|| bad("the role is not viewer, responder or admin"))?;
            let (attr, value) = subject
                .split_once('=')
                .ok_or_else(|| bad("expected CN=<name>:<role> or O=<group>:<role>"))?;
            let attr = match attr {
                "CN" => Attr::CommonName,
                "O" => Attr::Organization,
                _ => return Err(bad("only CN and O are matched")),
            };
            if value.is_empty() || value.contains('*') {
                return Err(bad("the value must be exact and not empty"));
            }
            rules.push(Rule {
                attr,
                value: value.to_owned(),
                role,
            });
        }
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The principal a verified certificate (DER) maps to, if any rule names it.
    pub fn principal(&self, der: &[u8]) -> Option<Principal> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let cns: Vec<&str> = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let orgs: Vec<&str> = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let role = self
            .rules
            .iter()
            .filter(|r| match r.attr {
                Attr::CommonName => cns.contains(&r.value.as_str()),
                Attr::Organization => orgs.contains(&r.value.as_str()),
            })
            .map(|r| r.role)
            .max()?;
        Some(Principal {
            name: format!("cert:{}", cns.first().copied().unwrap_or("")),
            role: Some(role),
            method: Method::ClientCert,
            kube_user: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_strictly() {
        let ok = CertRoles::parse(&[
            "CN=alice:responder".into(),
            "O=soc:viewer".into(),
            "CN=system:node:a:viewer".into(),
        ])
        .unwrap();
        assert_eq!(ok.rules.len(), 3);
        assert_eq!(ok.rules[2].value, "system:node:a");
        for bad in [
            "alice:responder",
            "CN=alice",
            "CN=alice:root",
            "OU=x:viewer",
            "CN=*:admin",
            "CN=:admin",
        ] {
            assert!(CertRoles::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
