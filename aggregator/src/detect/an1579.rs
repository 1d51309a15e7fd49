//! AN1579: high-privilege grants through (Cluster)RoleBindings. Roles are
//! known from the built-in bootstrap policy, the policy file, and their own
//! audit events; what a write left behind is worked out by `patch.rs`.

use serde_json::{Value, json};

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::{AuditEvent, RoleRef, Subject};

use super::alerts::{self, AlertParts};
use super::builtin::{builtin_binding, builtin_role};
use super::changes::{AutomationBlindRow, BindingRow, RbacLevelRow, RoleRow};
use super::patch::{self, StateFrom, Written};
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

fn join_subjects<'a>(s: impl IntoIterator<Item = &'a Subject>) -> String {
    s.into_iter()
        .map(subject_text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short summary of an event, as the example in the coverage report.
fn example(ev: &AuditEvent) -> Value {
    json!({
        "audit_id": ev.audit_id,
        "time": ev.time(),
        "verb": ev.verb,
        "request_uri": ev.request_uri,
        "username": ev.user.username,
        "credential_id": ev.credential_id(),
        "source_ip": ev.source_ip().map(|i| i.to_string()),
        "user_agent": ev.user_agent,
        "level": ev.level.as_str(),
    })
}

impl Detector {
    /// Privilege of the role a `binding_kind` in `namespace` refers to: the
    /// union of what the policy, the roles learned from the stream and the
    /// built-in roles say. Reading secrets counts only beyond one namespace.
    pub(super) fn role_privilege(
        &self,
        r: &RoleRef,
        namespace: &str,
        binding_kind: &str,
    ) -> Privilege {
        let ns = if r.kind == "Role" { namespace } else { "" };
        let mut reasons: Vec<String> = Vec::new();
        let mut known = false;
        if self.policy.listed_high_privilege(&r.kind, ns, &r.name) {
            reasons.push(format!(
                "{} is listed as high privilege in the policy",
                r.name
            ));
        }
        if let Some(e) = self
            .roles
            .get(&(r.kind.clone(), ns.to_owned(), r.name.clone()))
        {
            known = true;
            reasons.extend(rbac::reasons_for_binding(
                &e.reasons,
                binding_kind,
                namespace,
            ));
        }
        if r.kind == "ClusterRole"
            && let Some(b) = builtin_role(&r.name)
        {
            known = true;
            for x in rbac::reasons_for_binding(&b.reasons, binding_kind, namespace) {
                let x = format!("built-in ClusterRole {}: {x}", r.name);
                if !reasons.contains(&x) {
                    reasons.push(x);
                }
            }
        }
        if !reasons.is_empty() {
            Privilege::High(reasons)
        } else if known {
            Privilege::Low(format!(
                "{} {} grants nothing high-privilege",
                r.kind, r.name
            ))
        } else {
            Privilege::Unknown
        }
    }

    /// The known state of a binding: learned, else built-in.
    fn known_binding(&self, key: &super::ObjKey) -> Option<BindingEntry> {
        self.bindings.get(key).cloned().or_else(|| {
            builtin_binding(&key.0, &key.2).map(|b| BindingEntry {
                role_ref: Some(b.role_ref.clone()),
                subjects: b.subjects.clone(),
            })
        })
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
        if ev.dry_run() {
            // `kubectl diff`, `--dry-run=server`: nothing was persisted, so
            // nothing is granted and the known state must not change (a
            // dry-run role "downgrade" would hide the next real binding).
            return;
        }
        let cluster_scoped = kind.starts_with("Cluster");
        let ns = if cluster_scoped {
            ""
        } else {
            ev.namespace().unwrap_or("")
        }
        .to_owned();
        let name_from_uri = ev.name().map(str::to_owned);
        let t = ev.time().timestamp_millis();
        if kind.ends_with("Role") {
            if !ev.succeeded() {
                return;
            }
            let deleted = ev.verb == "delete";
            let mut key = (
                kind.to_owned(),
                ns.clone(),
                name_from_uri.clone().unwrap_or_default(),
            );
            let known = self.roles.get(&key).map(|e| e.rules.clone()).or_else(|| {
                (kind == "ClusterRole")
                    .then(|| builtin_role(&key.2).map(|b| b.rules.clone()))
                    .flatten()
            });
            let w = if deleted {
                None
            } else {
                Some(patch::written(
                    ev,
                    known.map(|r| json!({"rules": r})).as_ref(),
                ))
            };
            if key.2.is_empty() {
                key.2 = w
                    .as_ref()
                    .and_then(|w| w.object.metadata.name.clone())
                    .unwrap_or_default();
            }
            let rules = match &w {
                None => Vec::new(),
                Some(w) if w.from == StateFrom::Nothing => return, // not visible at this level
                Some(w) => w.object.rules.clone().unwrap_or_default(),
            };
            ch.unreadable_fields += w.as_ref().map_or(0, |w| w.unreadable.len() as u64);
            let reasons = rbac::high_privilege_reasons(&rules);
            if !deleted {
                let before = self.role_powers_before(&key);
                self.judge_role_widening(ev, &key, before.as_deref(), &reasons, out);
            }
            if deleted {
                self.roles.remove(&key);
            } else {
                self.roles.insert(
                    key.clone(),
                    RoleEntry {
                        rules: rules.clone(),
                        reasons: reasons.clone(),
                    },
                );
            }
            let (kind, namespace, name) = key;
            ch.roles.push(RoleRow {
                kind,
                namespace,
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
        let mut key = (kind.to_owned(), ns, name_from_uri.unwrap_or_default());
        if ev.verb == "delete" {
            self.judge_binding(ev, kind, key, None, ch, out);
            return;
        }
        let known = self.known_binding(&key);
        let known_json = known
            .as_ref()
            .map(|k| json!({"roleRef": k.role_ref, "subjects": k.subjects}));
        let w = patch::written(ev, known_json.as_ref());
        if key.2.is_empty() {
            key.2 = w.object.metadata.name.clone().unwrap_or_default();
        }
        ch.unreadable_fields += w.unreadable.len() as u64;
        self.judge_binding(ev, kind, key, Some(w), ch, out);
    }

    fn judge_binding(
        &mut self,
        ev: &AuditEvent,
        kind: &str,
        key: super::ObjKey,
        w: Option<Written>,
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
        let mut base_details = json!({
            "binding": {"kind": kind, "namespace": ns, "name": name},
            "actor_source_class": actor_class,
            "approved_automation": approved,
            "level": ev.level.as_str(),
        });
        if let Some(w) = &w {
            base_details["state_from"] = json!(w.from);
            if let Some(t) = w.patch_type {
                base_details["patch_type"] = json!(t);
            }
            if !w.unreadable.is_empty() {
                base_details["unreadable"] = json!(w.unreadable);
                base_details["unreadable_count"] = json!(w.unreadable.len());
            }
        }
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
        let Some(w) = w else {
            // delete
            if ev.succeeded()
                && let Some(old) = self.bindings.remove(&key)
            {
                ch.bindings
                    .push(row(old.role_ref.as_ref(), old.subjects, false, true));
            }
            return;
        };
        let old = self.known_binding(&key);
        let complete = w.complete();
        let role: Option<RoleRef> = w
            .object
            .role_ref
            .clone()
            .filter(|r| !r.name.is_empty())
            .or_else(|| {
                (!complete || w.from == StateFrom::Nothing)
                    .then(|| old.as_ref().and_then(|o| o.role_ref.clone()))
                    .flatten()
            });
        let seen_subjects = w.object.subjects.clone();
        if !ev.succeeded() {
            if ev.allowed() {
                // Authorized but failed (409 conflict, 422 invalid, 404, 5xx):
                // nothing was granted and nobody refused the actor; a retry
                // that succeeds is judged as any write.
                return;
            }
            let subjects = seen_subjects.unwrap_or_default();
            let privilege = role.as_ref().map(|r| self.role_privilege(r, &ns, kind));
            if approved.is_some()
                || matches!(privilege, Some(Privilege::Low(_)))
                    && !subjects.iter().any(rbac::is_broad_subject)
                    && !subjects.iter().any(rbac::is_masters)
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
            let reason = format!(
                "{user} tried to {} {what} granting {target} from {from}, and was refused (HTTP {}).",
                ev.verb,
                ev.code().map_or_else(|| "?".to_owned(), |c| c.to_string())
            );
            out.push(alerts::build(
                &rules::FAILED_GRANT,
                ev,
                AlertParts::actor(
                    severity,
                    actor_class,
                    exp.locations.clone(),
                    reason,
                    details,
                ),
            ));
            return;
        }
        if w.from == StateFrom::Nothing {
            // Metadata level (or no object logged): blind.
            ch.bindings.push(row(
                old.as_ref().and_then(|o| o.role_ref.as_ref()),
                old.as_ref().map(|o| o.subjects.clone()).unwrap_or_default(),
                false,
                false,
            ));
            if let Some(a) = &approved {
                // Approved automation's routine sync: counted in coverage, not alerted.
                ch.automation_blind.push(AutomationBlindRow {
                    automation: a.clone(),
                    resource: ev.resource().unwrap_or_default().to_owned(),
                    level: ev.level.as_str().to_owned(),
                    time_ms: ev.time().timestamp_millis(),
                    example: example(ev),
                });
                return;
            }
            let mut details = base_details;
            details["could_not_see"] = json!(["roleRef", "subjects"]);
            details["previous"] = json!(
                old.as_ref()
                    .map(|o| json!({"role_ref": o.role_ref, "subjects": o.subjects}))
            );
            let severity = if unknown_ip {
                Severity::High
            } else {
                Severity::Medium
            };
            let reason = format!(
                "{user} did {} on {what} from {from}, but the audit policy logs it at {} level, so the role and subjects it grants could not be seen.",
                ev.verb,
                ev.level.as_str()
            );
            out.push(alerts::build(
                &rules::BLIND_GRANT,
                ev,
                AlertParts::actor(
                    severity,
                    actor_class,
                    exp.locations.clone(),
                    reason,
                    details,
                ),
            ));
            return;
        }
        let same_role = |o: &BindingEntry| o.role_ref.is_some() && o.role_ref == role;
        let (subjects, added): (Vec<Subject>, Vec<Subject>) = if complete {
            let new = seen_subjects.unwrap_or_default();
            let added = match &old {
                Some(o) if same_role(o) => new
                    .iter()
                    .filter(|s| !o.subjects.contains(s))
                    .cloned()
                    .collect(),
                _ => new.clone(),
            };
            (new, added)
        } else {
            // Only what the patch adds is known: judge every subject it adds.
            let base: Vec<Subject> = match &old {
                Some(o) if same_role(o) || role.is_none() => o.subjects.clone(),
                _ => Vec::new(),
            };
            let adds = seen_subjects.unwrap_or_default();
            let added: Vec<Subject> = adds.iter().filter(|s| !base.contains(s)).cloned().collect();
            let mut all = base;
            all.extend(added.iter().cloned());
            (all, added)
        };
        let mut privilege = role
            .as_ref()
            .map_or(Privilege::Unknown, |r| self.role_privilege(r, &ns, kind));
        if let Some(m) = added.iter().find(|s| rbac::is_masters(s)) {
            let why = format!(
                "{} is cluster-admin (the authorizer and the bootstrap cluster-admin binding grant it everything)",
                subject_text(m)
            );
            privilege = match privilege {
                Privilege::High(mut r) => {
                    r.push(why);
                    Privilege::High(r)
                }
                _ => Privilege::High(vec![why]),
            };
        }
        self.bindings.insert(
            key,
            BindingEntry {
                role_ref: role.clone(),
                subjects: subjects.clone(),
            },
        );
        ch.bindings.push(row(
            role.as_ref(),
            subjects.clone(),
            privilege.is_high(),
            false,
        ));
        if added.is_empty() {
            return; // nothing newly granted (e.g. a label change)
        }
        let broad: Vec<&Subject> = added.iter().filter(|s| rbac::is_broad_subject(s)).collect();
        let mut details = base_details;
        details["role_ref"] = json!(role);
        details["subjects"] = json!(subjects);
        details["added_subjects"] = json!(added);
        let role_text = role.as_ref().map_or_else(
            || "a role the audit event does not show".to_owned(),
            |r| format!("{} {}", r.kind, r.name),
        );
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
                    "{user} granted {role_text} to {} through {what} from {from}: every such user gets it.",
                    join_subjects(broad.iter().copied())
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
                    "{user} granted high-privilege {role_text} ({}) to {} through {what} from {}{}, outside approved automation.",
                    why.join("; "),
                    join_subjects(&added),
                    from,
                    if unknown_ip {
                        ", an unknown address"
                    } else {
                        ""
                    }
                ),
            )
        } else if role.is_none() && approved.is_none() {
            // The patch adds subjects to a binding whose role was never seen.
            details["could_not_see"] = json!(["roleRef"]);
            (
                rules::BLIND_GRANT,
                if unknown_ip {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!(
                    "{user} added {} to {what} from {from}, but the binding's role was never seen (the patch does not name it and the response was not logged).",
                    join_subjects(&added)
                ),
            )
        } else {
            return;
        };
        out.push(alerts::build(
            &rule,
            ev,
            AlertParts::actor(
                severity,
                actor_class,
                exp.locations.clone(),
                reason,
                details,
            ),
        ));
    }
}

#[cfg(test)]
#[path = "an1579_tests.rs"]
mod tests;
