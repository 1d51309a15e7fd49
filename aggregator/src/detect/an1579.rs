//! AN1579: high-privilege grants through (Cluster)RoleBindings; roles are
//! learned from their own audit events.

use serde_json::json;

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::{AuditEvent, K8sObject, RoleRef, Subject};

use super::alerts::{self, AlertParts};
use super::changes::{BindingRow, RbacLevelRow, RoleRow};
use super::rbac::{self, Privilege};
use super::rules;
use super::{BindingEntry, Changes, Detector, RoleEntry};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn subject_text(s: &Subject) -> String {
    match &s.namespace {
        Some(ns) if !ns.is_empty() => format!("{} {ns}/{}", s.kind, s.name),
        _ => format!("{} {}", s.kind, s.name),
    }
}

/// The object a write left behind: a patch body is a patch, so read the response.
fn written_object(ev: &AuditEvent) -> Option<&K8sObject> {
    if ev.verb == "patch" {
        ev.response_object.as_ref()
    } else {
        ev.response_object.as_ref().or(ev.request_object.as_ref())
    }
}

impl Detector {
    /// Privilege of the role a binding in `namespace` refers to.
    pub(super) fn role_privilege(&self, r: &RoleRef, namespace: &str) -> Privilege {
        let ns = if r.kind == "Role" { namespace } else { "" };
        if let Some(p) = rbac::builtin(&r.kind, &r.name).filter(Privilege::is_high) {
            return p;
        }
        if self.policy.listed_high_privilege(&r.kind, ns, &r.name) {
            return Privilege::High(vec![format!(
                "{} is listed as high privilege in the policy",
                r.name
            )]);
        }
        if let Some(e) = self
            .roles
            .get(&(r.kind.clone(), ns.to_owned(), r.name.clone()))
        {
            return if e.reasons.is_empty() {
                Privilege::Low(format!(
                    "{} {} grants nothing high-privilege",
                    r.kind, r.name
                ))
            } else {
                Privilege::High(e.reasons.clone())
            };
        }
        rbac::builtin(&r.kind, &r.name).unwrap_or(Privilege::Unknown)
    }

    pub(super) fn judge_rbac(&mut self, ev: &AuditEvent, ch: &mut Changes, out: &mut Vec<Alert>) {
        let Some(resource) = ev.resource() else {
            return;
        };
        let kind = match resource {
            "rolebindings" => "RoleBinding",
            "clusterrolebindings" => "ClusterRoleBinding",
            "roles" => "Role",
            "clusterroles" => "ClusterRole",
            _ => return,
        };
        if ev.api_group().is_some_and(|g| g != RBAC_GROUP) || ev.subresource().is_some() {
            return;
        }
        let write = matches!(ev.verb.as_str(), "create" | "update" | "patch");
        if !write && ev.verb != "delete" {
            return;
        }
        ch.rbac_levels.push(RbacLevelRow {
            resource: resource.to_owned(),
            level: ev.level.as_str().to_owned(),
            time_ms: ev.time().timestamp_millis(),
            audit_id: ev.audit_id.clone(),
        });
        let cluster_scoped = kind.starts_with("Cluster");
        let ns = if cluster_scoped {
            ""
        } else {
            ev.namespace().unwrap_or("")
        }
        .to_owned();
        let obj = written_object(ev);
        let name = ev
            .name()
            .map(str::to_owned)
            .or_else(|| obj.and_then(|o| o.metadata.name.clone()))
            .unwrap_or_default();
        let key = (kind.to_owned(), ns.clone(), name.clone());
        let t = ev.time().timestamp_millis();
        if kind.ends_with("Role") {
            if !ev.succeeded() {
                return;
            }
            let deleted = ev.verb == "delete";
            let rules = match (deleted, obj.and_then(|o| o.rules.clone())) {
                (true, _) => Vec::new(),
                (false, Some(r)) => r,
                (false, None) => return, // not visible at this level
            };
            let reasons = rbac::high_privilege_reasons(&rules);
            if deleted {
                self.roles.remove(&key);
            } else {
                self.roles.insert(
                    key,
                    RoleEntry {
                        rules: rules.clone(),
                        reasons: reasons.clone(),
                    },
                );
            }
            ch.roles.push(RoleRow {
                kind: kind.to_owned(),
                namespace: ns,
                name,
                rules,
                reasons,
                origin: "audit".to_owned(),
                audit_id: Some(ev.audit_id.clone()),
                time_ms: t,
                deleted,
            });
            return;
        }
        self.judge_binding(ev, kind, key, obj, ch, out);
    }

    fn judge_binding(
        &mut self,
        ev: &AuditEvent,
        kind: &str,
        key: super::ObjKey,
        obj: Option<&K8sObject>,
        ch: &mut Changes,
        out: &mut Vec<Alert>,
    ) {
        let (_, ns, name) = key.clone();
        let user = ev.user.username.as_str();
        let ip = ev.source_ip();
        let approved = self
            .policy
            .approved_automation(user, ev.credential_id(), ip)
            .map(|a| a.name.clone());
        let exp = self.expectations(ev, false);
        let actor_class = ip.map_or(SourceClass::Unknown, |ip| self.classify(ip, &exp).0);
        let unknown_ip = matches!(actor_class, SourceClass::Outside | SourceClass::Unknown);
        let what = if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {ns}/{name}")
        };
        let from = ip.map_or_else(|| "an unknown address".to_owned(), |i| i.to_string());
        let base_details = json!({
            "binding": {"kind": kind, "namespace": ns, "name": name},
            "actor_source_class": actor_class,
            "approved_automation": approved,
            "level": ev.level.as_str(),
        });
        let row = |role: Option<&RoleRef>, subjects: Vec<Subject>, high: bool, deleted: bool| {
            BindingRow {
                kind: kind.to_owned(),
                namespace: ns.clone(),
                name: name.clone(),
                role_kind: role.map(|r| r.kind.clone()),
                role_name: role.map(|r| r.name.clone()),
                subjects,
                high_privilege: high,
                verb: ev.verb.clone(),
                actor: user.to_owned(),
                source_ip: ip.map(|i| i.to_string()),
                audit_id: ev.audit_id.clone(),
                time_ms: ev.time().timestamp_millis(),
                deleted,
            }
        };
        if ev.verb == "delete" {
            if ev.succeeded()
                && let Some(old) = self.bindings.remove(&key)
            {
                ch.bindings
                    .push(row(old.role_ref.as_ref(), old.subjects, false, true));
            }
            return;
        }
        let body = obj.filter(|o| o.role_ref.is_some());
        if !ev.succeeded() {
            let role = body.and_then(|o| o.role_ref.clone());
            let subjects = body.and_then(|o| o.subjects.clone()).unwrap_or_default();
            let privilege = role.as_ref().map(|r| self.role_privilege(r, &ns));
            if approved.is_some()
                || matches!(privilege, Some(Privilege::Low(_)))
                    && !subjects.iter().any(rbac::is_broad_subject)
            {
                return;
            }
            let severity = if subjects.iter().any(rbac::is_broad_subject) || unknown_ip {
                Severity::High
            } else {
                Severity::Medium
            };
            let target = role.as_ref().map_or_else(
                || "a role the audit event does not show".to_owned(),
                |r| format!("{} {}", r.kind, r.name),
            );
            let mut details = base_details;
            details["role_ref"] = json!(role);
            details["subjects"] = json!(subjects);
            details["response_code"] = json!(ev.code());
            out.push(alerts::build(
                &rules::FAILED_GRANT,
                ev,
                AlertParts {
                    severity,
                    class: actor_class,
                    expected: exp.locations.clone(),
                    evidence: Vec::new(),
                    reason: format!(
                        "{user} tried to {} {what} granting {target} from {from}, and was refused (HTTP {}).",
                        ev.verb,
                        ev.code().map_or_else(|| "?".to_owned(), |c| c.to_string())
                    ),
                    details,
                    more_audit_ids: Vec::new(),
                    effective_identity: true,
                },
            ));
            return;
        }
        let Some(body) = body else {
            // Metadata level (or a patch without its response): blind.
            let old = self.bindings.get(&key).cloned();
            let mut details = base_details;
            details["could_not_see"] = json!(["roleRef", "subjects"]);
            details["previous"] = json!(
                old.as_ref()
                    .map(|o| json!({"role_ref": o.role_ref, "subjects": o.subjects}))
            );
            let severity = if approved.is_some() {
                Severity::Low
            } else if unknown_ip {
                Severity::High
            } else {
                Severity::Medium
            };
            ch.bindings.push(row(
                old.as_ref().and_then(|o| o.role_ref.as_ref()),
                old.as_ref().map(|o| o.subjects.clone()).unwrap_or_default(),
                false,
                false,
            ));
            out.push(alerts::build(
                &rules::BLIND_GRANT,
                ev,
                AlertParts {
                    severity,
                    class: actor_class,
                    expected: exp.locations.clone(),
                    evidence: Vec::new(),
                    reason: format!(
                        "{user} did {} on {what} from {from}, but the audit policy logs it at {} level, so the role and subjects it grants could not be seen.",
                        ev.verb,
                        ev.level.as_str()
                    ),
                    details,
                    more_audit_ids: Vec::new(),
                    effective_identity: true,
                },
            ));
            return;
        };
        let role = body.role_ref.clone().unwrap_or_default();
        let subjects = body.subjects.clone().unwrap_or_default();
        let privilege = self.role_privilege(&role, &ns);
        let old = self.bindings.insert(
            key,
            BindingEntry {
                role_ref: Some(role.clone()),
                subjects: subjects.clone(),
            },
        );
        ch.bindings.push(row(
            Some(&role),
            subjects.clone(),
            privilege.is_high(),
            false,
        ));
        let added: Vec<Subject> = match &old {
            Some(o) if o.role_ref.as_ref() == Some(&role) => subjects
                .iter()
                .filter(|s| !o.subjects.contains(s))
                .cloned()
                .collect(),
            _ => subjects.clone(),
        };
        if added.is_empty() {
            return; // nothing newly granted (e.g. a label change)
        }
        let broad: Vec<&Subject> = added.iter().filter(|s| rbac::is_broad_subject(s)).collect();
        let mut details = base_details;
        details["role_ref"] = json!(role);
        details["subjects"] = json!(subjects);
        details["added_subjects"] = json!(added);
        let (rule, severity, reason) = if !broad.is_empty()
            && !matches!(privilege, Privilege::Low(_))
        {
            details["why_high_privilege"] = json!(match &privilege {
                Privilege::High(r) => r.clone(),
                _ => vec!["role not known".to_owned()],
            });
            (
                rules::BROAD_GRANT,
                Severity::Critical,
                format!(
                    "{user} granted {} {} to {} through {what} from {from}: every such user gets it.",
                    role.kind,
                    role.name,
                    broad
                        .iter()
                        .map(|s| subject_text(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        } else if let (Privilege::High(why), None) = (&privilege, &approved) {
            details["why_high_privilege"] = json!(why);
            (
                rules::HIGH_PRIV_GRANT,
                if unknown_ip {
                    Severity::Critical
                } else {
                    Severity::High
                },
                format!(
                    "{user} granted high-privilege {} {} ({}) to {} through {what} from {}{}, outside approved automation.",
                    role.kind,
                    role.name,
                    why.join(", "),
                    added
                        .iter()
                        .map(subject_text)
                        .collect::<Vec<_>>()
                        .join(", "),
                    from,
                    if unknown_ip {
                        ", an unknown address"
                    } else {
                        ""
                    }
                ),
            )
        } else {
            return;
        };
        out.push(alerts::build(
            &rule,
            ev,
            AlertParts {
                severity,
                class: actor_class,
                expected: exp.locations.clone(),
                evidence: Vec::new(),
                reason,
                details,
                more_audit_ids: Vec::new(),
                effective_identity: true,
            },
        ));
    }
}
