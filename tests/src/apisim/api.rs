//! The believable subset of the Kubernetes API the simulator serves:
//! discovery (`/version`, `/api`, `/apis`), pods (list/get), and
//! ClusterRoleBindings / RoleBindings (create, get, merge-patch), with the
//! API server's object and `Status` shapes. Every request yields one audit
//! [`Record`]: `RequestResponse` for RBAC resources, `Metadata` otherwise.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::audit::{ObjectRef, Record};
use super::authn::UserInfo;
use super::rbac::Rbac;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Objects the simulator holds.
#[derive(Default)]
pub struct Objects {
    /// `(resource, namespace or "", name)` -> object.
    map: Mutex<BTreeMap<(String, String, String), Value>>,
    next_rv: Mutex<u64>,
}

impl Objects {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String, String), Value>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rv(&self) -> String {
        let mut n = self
            .next_rv
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n += 1;
        (1000 + *n).to_string()
    }

    /// Adds a pod (the story's workloads), so `list pods` shows it.
    pub fn add_pod(&self, namespace: &str, name: &str, uid: &str, node: &str, ip: &str) {
        let pod = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": uid,
                         "resourceVersion": self.rv(), "creationTimestamp": super::audit::micro_time(Utc::now())},
            "spec": {"nodeName": node, "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
        });
        self.lock()
            .insert(("pods".into(), namespace.into(), name.into()), pod);
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    /// `None` for non-resource URLs.
    object: Option<ObjectRef>,
    /// Resource name for RBAC (`discovery` for non-resource URLs).
    rbac_resource: String,
}

fn route(path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let obj = |resource: &str,
               ns: Option<&str>,
               name: Option<&str>,
               group: Option<&str>,
               version: &str| Route {
        object: Some(ObjectRef {
            resource: resource.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            api_group: group.map(Into::into),
            api_version: version.into(),
        }),
        rbac_resource: resource.into(),
    };
    match segs.as_slice() {
        ["version"] => Some(Route {
            object: None,
            rbac_resource: "public-info".into(),
        }),
        ["api"] | ["apis"] | ["api", "v1"] | ["apis", RBAC_GROUP] | ["apis", RBAC_GROUP, "v1"] => {
            Some(Route {
                object: None,
                rbac_resource: "discovery".into(),
            })
        }
        ["api", "v1", "namespaces", ns, "pods"] => Some(obj("pods", Some(ns), None, None, "v1")),
        ["api", "v1", "namespaces", ns, "pods", name] => {
            Some(obj("pods", Some(ns), Some(name), None, "v1"))
        }
        ["apis", RBAC_GROUP, "v1", "clusterrolebindings"] => Some(obj(
            "clusterrolebindings",
            None,
            None,
            Some(RBAC_GROUP),
            "v1",
        )),
        ["apis", RBAC_GROUP, "v1", "clusterrolebindings", name] => Some(obj(
            "clusterrolebindings",
            None,
            Some(name),
            Some(RBAC_GROUP),
            "v1",
        )),
        ["apis", RBAC_GROUP, "v1", "namespaces", ns, "rolebindings"] => {
            Some(obj("rolebindings", Some(ns), None, Some(RBAC_GROUP), "v1"))
        }
        [
            "apis",
            RBAC_GROUP,
            "v1",
            "namespaces",
            ns,
            "rolebindings",
            name,
        ] => Some(obj(
            "rolebindings",
            Some(ns),
            Some(name),
            Some(RBAC_GROUP),
            "v1",
        )),
        _ => None,
    }
}

fn verb(method: &str, named: bool) -> &'static str {
    match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    }
}

/// The API server's `Status` body for an error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn discovery(path: &str) -> Value {
    match path.trim_end_matches('/') {
        "/version" => json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-credtrail-apisim",
                             "platform": "linux/amd64"}),
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": RBAC_GROUP, "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}}]}),
        _ => {
            json!({"kind": "APIResourceList", "groupVersion": path.trim_start_matches("/apis/").trim_start_matches("/api/")})
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// One request, already authenticated.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub user: UserInfo,
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub body: &'a [u8],
    pub received: DateTime<Utc>,
}

/// Serves `req`: the HTTP status, the JSON body, and the audit record.
pub fn serve(objects: &Objects, rbac: &Rbac, req: Request<'_>) -> (u16, Value, Record) {
    let route = route(req.path);
    let named = route
        .as_ref()
        .and_then(|r| r.object.as_ref())
        .is_some_and(|o| o.name.is_some());
    let resource_request = route.as_ref().is_some_and(|r| r.object.is_some());
    // Non-resource URLs (/version, /api, ...) take the lower-cased HTTP method as verb.
    let lower = req.method.to_ascii_lowercase();
    let verb: &str = if resource_request || route.is_none() {
        verb(req.method, named)
    } else {
        &lower
    };
    let mut object_ref = route.as_ref().and_then(|r| r.object.clone());
    let request_object: Option<Value> = if req.body.is_empty() {
        None
    } else {
        serde_json::from_slice(req.body).ok()
    };
    // A create names the object in its body.
    if verb == "create"
        && let (Some(o), Some(body)) = (&mut object_ref, &request_object)
    {
        o.name = body["metadata"]["name"].as_str().map(Into::into);
    }
    let rbac_level = object_ref
        .as_ref()
        .is_some_and(|o| o.api_group.as_deref() == Some(RBAC_GROUP));
    let mut record = Record {
        level: if rbac_level {
            "RequestResponse"
        } else {
            "Metadata"
        },
        verb: verb.into(),
        request_uri: req.path.into(),
        user: req.user.clone(),
        source_ips: req.source_ips,
        user_agent: req.user_agent,
        object_ref,
        code: 200,
        request_object: request_object.clone(),
        response_object: None,
        received: req.received,
        decision: "allow",
        reason: String::new(),
    };
    let Some(route) = route else {
        let body = status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        record.code = 404;
        return (404, body, record);
    };
    let decision = rbac.decide(&req.user, verb, &route.rbac_resource);
    record.reason = decision.reason.clone();
    if !decision.allowed {
        let what = match &route.object {
            Some(o) => format!(
                "{}{} {:?}",
                o.resource,
                o.api_group
                    .as_ref()
                    .map(|g| format!(".{g}"))
                    .unwrap_or_default(),
                o.name.clone().unwrap_or_default()
            ),
            None => format!("path {:?}", req.path),
        };
        let msg = format!(
            "{what} is forbidden: User {:?} cannot {verb} resource",
            req.user.username
        );
        let body = status(403, "Forbidden", &msg);
        record.code = 403;
        record.decision = "forbid";
        record.response_object = Some(body.clone());
        return (403, body, record);
    }
    let Some(o) = record.object_ref.clone() else {
        let body = discovery(req.path);
        return (200, body, record);
    };
    let key = (
        o.resource.clone(),
        o.namespace.clone().unwrap_or_default(),
        o.name.clone().unwrap_or_default(),
    );
    let (code, body) = match verb {
        "list" => {
            let map = objects.lock();
            let items: Vec<Value> = map
                .iter()
                .filter(|((r, ns, _), _)| *r == key.0 && *ns == key.1)
                .map(|(_, v)| v.clone())
                .collect();
            let kind = if o.resource == "pods" {
                "PodList"
            } else {
                "List"
            };
            (
                200,
                json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": objects.rv()}, "items": items}),
            )
        }
        "get" => match objects.lock().get(&key) {
            Some(v) => (200, v.clone()),
            None => (
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{} {:?} not found", o.resource, key.2),
                ),
            ),
        },
        "create" => match request_object {
            Some(mut obj) if !key.2.is_empty() => {
                let mut map = objects.lock();
                let name = key.2.clone();
                let slot = map.entry(key);
                if let std::collections::btree_map::Entry::Occupied(_) = slot {
                    (
                        409,
                        status(
                            409,
                            "AlreadyExists",
                            &format!("{} {:?} already exists", o.resource, name),
                        ),
                    )
                } else {
                    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                    obj["metadata"]["resourceVersion"] = json!(objects.rv());
                    obj["metadata"]["creationTimestamp"] =
                        json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    if let Some(ns) = &o.namespace {
                        obj["metadata"]["namespace"] = json!(ns);
                    }
                    slot.or_insert(obj.clone());
                    (201, obj)
                }
            }
            _ => (
                400,
                status(
                    400,
                    "BadRequest",
                    "the request body must be an object with metadata.name",
                ),
            ),
        },
        "patch" | "update" => match (objects.lock().get_mut(&key), request_object) {
            (Some(obj), Some(patch)) => {
                if verb == "update" {
                    let meta = obj["metadata"].clone();
                    *obj = patch;
                    obj["metadata"] = meta;
                } else {
                    merge_patch(obj, &patch);
                }
                obj["metadata"]["resourceVersion"] = json!(objects.rv());
                (200, obj.clone())
            }
            (None, _) => (
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{} {:?} not found", o.resource, key.2),
                ),
            ),
            (_, None) => (400, status(400, "BadRequest", "the patch body is not JSON")),
        },
        _ => (
            405,
            status(
                405,
                "MethodNotAllowed",
                "method not supported by the simulator",
            ),
        ),
    };
    record.code = code;
    record.response_object = Some(body.clone());
    (code, body, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn req<'a>(method: &'a str, path: &'a str, u: UserInfo, body: &'a [u8]) -> Request<'a> {
        Request {
            method,
            path,
            user: u,
            source_ips: vec!["127.0.0.9".into()],
            user_agent: Some("kubectl/v1.32.0".into()),
            body,
            received: Utc::now(),
        }
    }

    #[test]
    fn binding_create_patch_and_forbidden() {
        let objects = Objects::default();
        let rbac = Rbac::default();
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "x"}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": RBAC_GROUP}]})
        .to_string();
        let path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
        let alice = user("alice", &["sre", "system:authenticated"]);
        let (code, body, rec) = serve(
            &objects,
            &rbac,
            req("POST", path, alice.clone(), crb.as_bytes()),
        );
        assert_eq!(code, 201);
        assert!(body["metadata"]["uid"].is_string());
        let ev = rec.to_event();
        assert_eq!(ev["level"], "RequestResponse");
        assert_eq!(ev["verb"], "create");
        assert_eq!(ev["objectRef"]["name"], "x");
        assert_eq!(ev["responseObject"]["roleRef"]["name"], "view");
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "allow");
        // Merge patch: the event's responseObject holds the patched binding.
        let patch = br#"{"roleRef":{"name":"cluster-admin"}}"#;
        let (code, _, rec) = serve(
            &objects,
            &rbac,
            req("PATCH", &format!("{path}/x"), alice.clone(), patch),
        );
        assert_eq!(code, 200);
        let ev = rec.to_event();
        assert_eq!(ev["verb"], "patch");
        assert_eq!(ev["requestObject"]["roleRef"]["name"], "cluster-admin");
        assert_eq!(ev["responseObject"]["roleRef"]["name"], "cluster-admin");
        assert_eq!(ev["responseObject"]["subjects"][0]["name"], "bob");
        // A user without a rule is refused, and the event says so.
        let (code, body, rec) = serve(
            &objects,
            &rbac,
            req(
                "POST",
                path,
                user("mallory", &["system:authenticated"]),
                crb.as_bytes(),
            ),
        );
        assert_eq!((code, body["reason"].as_str()), (403, Some("Forbidden")));
        let ev = rec.to_event();
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(ev["responseStatus"]["code"], 403);
    }

    #[test]
    fn pods_are_listed_at_metadata_level() {
        let objects = Objects::default();
        objects.add_pod("shop", "web-1", "uid-1", "node-a", "127.10.1.5");
        let sa = user(
            "system:serviceaccount:shop:web",
            &["system:serviceaccounts", "system:authenticated"],
        );
        let (code, body, rec) = serve(
            &objects,
            &Rbac::default(),
            req("GET", "/api/v1/namespaces/shop/pods", sa, b""),
        );
        assert_eq!(code, 200);
        assert_eq!(body["items"][0]["metadata"]["uid"], "uid-1");
        let ev = rec.to_event();
        assert_eq!(ev["level"], "Metadata");
        assert_eq!(ev["verb"], "list");
        assert_eq!(ev["objectRef"]["namespace"], "shop");
        assert!(ev.get("responseObject").is_none());
        assert_eq!(ev["sourceIPs"][0], "127.0.0.9");
    }
}
