//! Credential identity: domain <-> protobuf.

use super::{ConvertError, Result, kind_from_pb, optional, required_string, ts_from_pb, ts_to_pb};
use crate::model;
use crate::pb::agent as pb;

impl From<model::CredentialIdentity> for pb::CredentialIdentity {
    fn from(c: model::CredentialIdentity) -> Self {
        Self {
            kind: pb::CredentialKind::from(c.kind) as i32,
            sha256: c.sha256,
            token: c.token.map(Into::into),
            kubeconfig: c.kubeconfig.map(Into::into),
            certificate: c.certificate.map(Into::into),
            error: c.error,
        }
    }
}

impl TryFrom<pb::CredentialIdentity> for model::CredentialIdentity {
    type Error = ConvertError;
    fn try_from(c: pb::CredentialIdentity) -> Result<Self> {
        Ok(Self {
            kind: kind_from_pb("kind", c.kind)?,
            sha256: c.sha256,
            token: optional("token", c.token)?,
            kubeconfig: optional("kubeconfig", c.kubeconfig)?,
            certificate: optional("certificate", c.certificate)?,
            error: c.error,
        })
    }
}

impl From<model::TokenIdentity> for pb::TokenIdentity {
    fn from(t: model::TokenIdentity) -> Self {
        Self {
            sha256: t.sha256,
            claims: t.claims.map(Into::into),
        }
    }
}

impl TryFrom<pb::TokenIdentity> for model::TokenIdentity {
    type Error = ConvertError;
    fn try_from(t: pb::TokenIdentity) -> Result<Self> {
        Ok(Self {
            sha256: required_string("sha256", t.sha256)?,
            claims: t.claims.map(Into::into),
        })
    }
}

impl From<model::JwtClaims> for pb::JwtClaims {
    fn from(c: model::JwtClaims) -> Self {
        Self {
            iss: c.iss,
            sub: c.sub,
            aud: c.aud,
            jti: c.jti,
            iat: c.iat,
            nbf: c.nbf,
            exp: c.exp,
            namespace: c.namespace,
            service_account_name: c.service_account_name,
            service_account_uid: c.service_account_uid,
            pod_name: c.pod_name,
            pod_uid: c.pod_uid,
            node_name: c.node_name,
            node_uid: c.node_uid,
            secret_name: c.secret_name,
        }
    }
}

impl From<pb::JwtClaims> for model::JwtClaims {
    fn from(c: pb::JwtClaims) -> Self {
        Self {
            iss: c.iss,
            sub: c.sub,
            aud: c.aud,
            jti: c.jti,
            iat: c.iat,
            nbf: c.nbf,
            exp: c.exp,
            namespace: c.namespace,
            service_account_name: c.service_account_name,
            service_account_uid: c.service_account_uid,
            pod_name: c.pod_name,
            pod_uid: c.pod_uid,
            node_name: c.node_name,
            node_uid: c.node_uid,
            secret_name: c.secret_name,
        }
    }
}

impl From<model::KubeconfigIdentity> for pb::KubeconfigIdentity {
    fn from(k: model::KubeconfigIdentity) -> Self {
        Self {
            current_context: k.current_context,
            servers: k.servers,
            users: k.users.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::KubeconfigIdentity> for model::KubeconfigIdentity {
    type Error = ConvertError;
    fn try_from(k: pb::KubeconfigIdentity) -> Result<Self> {
        let users = k
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                model::KubeconfigUser::try_from(u).map_err(|e| e.within(&format!("users[{i}]")))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            current_context: k.current_context,
            servers: k.servers,
            users,
        })
    }
}

impl From<model::KubeconfigUser> for pb::KubeconfigUser {
    fn from(u: model::KubeconfigUser) -> Self {
        Self {
            name: u.name,
            client_certificate: u.client_certificate.map(Into::into),
            token: u.token.map(Into::into),
            exec_command: u.exec_command,
            auth_provider: u.auth_provider,
            username: u.username,
        }
    }
}

impl TryFrom<pb::KubeconfigUser> for model::KubeconfigUser {
    type Error = ConvertError;
    fn try_from(u: pb::KubeconfigUser) -> Result<Self> {
        Ok(Self {
            name: u.name,
            client_certificate: optional("client_certificate", u.client_certificate)?,
            token: optional("token", u.token)?,
            exec_command: u.exec_command,
            auth_provider: u.auth_provider,
            username: u.username,
        })
    }
}

impl From<model::CertIdentity> for pb::CertIdentity {
    fn from(c: model::CertIdentity) -> Self {
        Self {
            sha256: c.sha256,
            subject_cn: c.subject_cn,
            subject_o: c.subject_o,
            issuer_cn: c.issuer_cn,
            not_before: c.not_before.as_ref().map(ts_to_pb),
            not_after: c.not_after.as_ref().map(ts_to_pb),
        }
    }
}

impl TryFrom<pb::CertIdentity> for model::CertIdentity {
    type Error = ConvertError;
    fn try_from(c: pb::CertIdentity) -> Result<Self> {
        Ok(Self {
            sha256: required_string("sha256", c.sha256)?,
            subject_cn: c.subject_cn,
            subject_o: c.subject_o,
            issuer_cn: c.issuer_cn,
            not_before: c
                .not_before
                .map(|t| ts_from_pb("not_before", &t))
                .transpose()?,
            not_after: c
                .not_after
                .map(|t| ts_from_pb("not_after", &t))
                .transpose()?,
        })
    }
}
