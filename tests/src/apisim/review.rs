//! `TokenReview` and `SubjectAccessReview`, as the API server serves them to
//! webhook authenticators and proxies (kube-rbac-proxy, credtrail's query
//! API in `--api-kube-auth` mode):
//!
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews`: the caller needs
//!   `create` on `tokenreviews`; `spec.token` is verified with the
//!   simulator's issuer (signature, expiry) exactly as a request's bearer
//!   token is, and the user it names is returned;
//! - `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: the caller
//!   needs `create` on `subjectaccessreviews`; the decision is the
//!   simulator's RBAC table ([`super::rbac`]) for `spec.user`/`spec.groups`
//!   and `spec.resourceAttributes` (resource `<resource>.<group>` when the
//!   group is set, e.g. `alerts.credtrail.io`).
//!
//! Neither the token nor the review body is written to the audit event
//! (level `Metadata`).

use serde_json::{Value, json};

use super::api::{Request, status};
use super::audit::{ObjectRef, Record};
use super::authn::{self, UserInfo};
use super::rbac::Rbac;
use super::token::Issuer;

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Serves `req` when it is a review; `None` for any other path.
pub fn serve(issuer: &Issuer, rbac: &Rbac, req: &Request<'_>) -> Option<(u16, Value, Record)> {
    let path = req.path.split('?').next().unwrap_or("");
    let (resource, group) = match path {
        TOKEN_REVIEWS => ("tokenreviews", "authentication.k8s.io"),
        ACCESS_REVIEWS => ("subjectaccessreviews", "authorization.k8s.io"),
        _ => return None,
    };
    let mut record = Record {
        level: "Metadata",
        verb: "create".into(),
        request_uri: req.path.into(),
        user: req.user.clone(),
        source_ips: req.source_ips.clone(),
        user_agent: req.user_agent.clone(),
        object_ref: Some(ObjectRef {
            resource: resource.into(),
            namespace: None,
            name: None,
            api_group: Some(group.into()),
            api_version: "v1".into(),
        }),
        code: 201,
        request_object: None,
        response_object: None,
        received: req.received,
        decision: "allow",
        reason: String::new(),
    };
    let fail = |mut record: Record, code: u16, reason: &str, msg: &str| {
        record.code = code;
        if code == 403 {
            record.decision = "forbid";
        }
        Some((code, status(code, reason, msg), record))
    };
    if req.method != "POST" {
        return fail(record, 405, "MethodNotAllowed", "only create is supported");
    }
    let decision = rbac.decide(&req.user, "create", resource);
    if !decision.allowed {
        let msg = format!(
            "{resource}.{group} is forbidden: User {:?} cannot create resource",
            req.user.username
        );
        return fail(record, 403, "Forbidden", &msg);
    }
    let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
        return fail(record, 400, "BadRequest", "the body is not JSON");
    };
    record.reason = decision.reason;
    let spec = &body["spec"];
    let answer = if resource == "tokenreviews" {
        let Some(token) = spec["token"].as_str() else {
            return fail(record, 400, "BadRequest", "spec.token is required");
        };
        // The API server's own audience when the review names none; else
        // the token must carry one of `spec.audiences`, and the answer
        // names those it carries.
        let wanted: Vec<String> = match spec["audiences"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => vec![super::token::ISSUER.to_owned()],
        };
        let st = match (authn::from_token(issuer, token), issuer.verify(token)) {
            (Ok(u), Ok(claims)) => {
                let common: Vec<&String> =
                    wanted.iter().filter(|w| claims.aud.contains(w)).collect();
                if common.is_empty() {
                    json!({"authenticated": false, "error": "token audiences is invalid for the target audiences"})
                } else {
                    json!({"authenticated": true, "user": u, "audiences": common})
                }
            }
            _ => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": null}, "spec": {}, "status": st})
    } else {
        let ra = &spec["resourceAttributes"];
        let (Some(user), Some(verb), Some(res)) = (
            spec["user"].as_str(),
            ra["verb"].as_str(),
            ra["resource"].as_str(),
        ) else {
            return fail(
                record,
                400,
                "BadRequest",
                "spec.user and spec.resourceAttributes.{verb,resource} are required",
            );
        };
        let subject = UserInfo {
            username: user.into(),
            uid: spec["uid"].as_str().map(Into::into),
            groups: spec["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(Into::into))
                        .collect()
                })
                .unwrap_or_default(),
            extra: Default::default(),
        };
        let key = match ra["group"].as_str().filter(|g| !g.is_empty()) {
            Some(g) => format!("{res}.{g}"),
            None => res.to_owned(),
        };
        let d = rbac.decide(&subject, verb, &key);
        json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": null}, "spec": spec,
               "status": {"allowed": d.allowed, "reason": d.reason}})
    };
    Some((201, answer, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apisim::rbac::Rule;
    use crate::apisim::token::TokenSpec;

    fn req<'a>(path: &'a str, user: UserInfo, body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            path,
            user,
            source_ips: vec!["127.0.0.1".into()],
            user_agent: None,
            body,
            received: chrono::Utc::now(),
        }
    }

    #[test]
    fn reviews_verify_tokens_and_apply_rbac() {
        let issuer = Issuer::new();
        let (tok, _) = issuer.mint(&TokenSpec {
            namespace: "soc".into(),
            service_account: "alice".into(),
            pod: None,
            node: None,
            lifetime_secs: 600,
        });
        let mut rbac = Rbac::default();
        rbac.rules.push(Rule {
            binding: "reviewer",
            role: "system:auth-delegator",
            users: vec!["system:serviceaccount:credtrail:aggregator".into()],
            groups: vec![],
            verbs: vec!["create"],
            resources: vec!["tokenreviews", "subjectaccessreviews"],
        });
        rbac.rules.push(Rule {
            binding: "soc-viewers",
            role: "credtrail-viewer",
            users: vec![],
            groups: vec!["system:serviceaccounts:soc".into()],
            verbs: vec!["get"],
            resources: vec!["alerts.credtrail.io"],
        });
        let agg = UserInfo {
            username: "system:serviceaccount:credtrail:aggregator".into(),
            ..Default::default()
        };
        let body = json!({"spec": {"token": tok}}).to_string();
        let (code, v, rec) = serve(
            &issuer,
            &rbac,
            &req(TOKEN_REVIEWS, agg.clone(), body.as_bytes()),
        )
        .unwrap();
        assert_eq!(code, 201);
        assert_eq!(v["status"]["authenticated"], true);
        assert_eq!(
            v["status"]["user"]["username"],
            "system:serviceaccount:soc:alice"
        );
        assert!(
            !rec.to_event().to_string().contains(&tok),
            "no token in audit"
        );
        let forged = json!({"spec": {"token": format!("{tok}x")}}).to_string();
        let (_, v, _) = serve(
            &issuer,
            &rbac,
            &req(TOKEN_REVIEWS, agg.clone(), forged.as_bytes()),
        )
        .unwrap();
        assert_eq!(v["status"]["authenticated"], false);
        // A caller without create on tokenreviews.
        let (code, _, _) = serve(
            &issuer,
            &rbac,
            &req(TOKEN_REVIEWS, authn::anonymous(), body.as_bytes()),
        )
        .unwrap();
        assert_eq!(code, 403);
        let sar = |verb: &str| {
            json!({"spec": {"user": "system:serviceaccount:soc:alice",
                            "groups": ["system:serviceaccounts", "system:serviceaccounts:soc"],
                            "resourceAttributes": {"group": "credtrail.io", "resource": "alerts", "verb": verb}}})
            .to_string()
        };
        let b = sar("get");
        let (_, v, _) = serve(
            &issuer,
            &rbac,
            &req(ACCESS_REVIEWS, agg.clone(), b.as_bytes()),
        )
        .unwrap();
        assert_eq!(v["status"]["allowed"], true);
        let b = sar("update");
        let (_, v, _) = serve(&issuer, &rbac, &req(ACCESS_REVIEWS, agg, b.as_bytes())).unwrap();
        assert_eq!(v["status"]["allowed"], false);
        assert!(
            serve(
                &issuer,
                &rbac,
                &req("/api/v1/pods", UserInfo::default(), b"")
            )
            .is_none()
        );
    }
}
