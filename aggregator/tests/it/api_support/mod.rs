//! Shared set-up for the query-API tests: a real in-memory aggregator
//! (`AppState` + GC's pipeline), the HTTP router and the gRPC service bound to
//! 127.0.0.1:0, a small HTTP client, and audit events that alert.

use std::net::SocketAddr;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use credtrail_aggregator::audit::AuditEvent;
use credtrail_aggregator::auth::{ApiAuth, TokenFile};
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_proto::pb::query::query_service_client::QueryServiceClient;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Tokens the test API accepts, one per role (names `admin`, `responder`, `viewer`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
pub const RESPONDER_TOKEN: &str = "test-responder-token-0123456789abcdef012345";
pub const VIEWER_TOKEN: &str = "test-viewer-token-0123456789abcdef0123456789";

/// The token file for those three tokens.
pub fn token_file_text() -> String {
    use credtrail_aggregator::auth::{Role, tokens};
    format!(
        "{}\n{}\n{}\n",
        tokens::line("admin", Role::Admin, ADMIN_TOKEN),
        tokens::line("responder", Role::Responder, RESPONDER_TOKEN),
        tokens::line("viewer", Role::Viewer, VIEWER_TOKEN)
    )
}

/// The authentication the test API uses: the three tokens, default hosts.
pub fn test_auth(listen: SocketAddr) -> ApiAuth {
    let tokens = TokenFile::parse("test tokens", &token_file_text()).unwrap();
    let hosts = credtrail_aggregator::auth::default_hosts(Some(listen));
    ApiAuth::deny_all()
        .with_tokens(tokens)
        .with_http(credtrail_aggregator::auth::HttpPolicy {
            allowed_hosts: hosts,
            metrics_require_auth: false,
        })
}

/// Adds `authorization: Bearer <token>` to every gRPC call.
#[derive(Clone)]
pub struct WithToken(pub Option<&'static str>);

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    }
}

/// A gRPC query client that sends a token.
pub type GrpcClient = QueryServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>,
>;

/// A running API: both listeners on loopback, sharing one aggregator.
pub struct Api {
    pub state: AppState,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Api {
    /// With a policy that names the cluster's ranges (nodes 127.0.10.0/24,
    /// pods 127.0.20.0/24), so other 127.x addresses are outside the cluster.
    pub async fn start() -> Self {
        Self::start_with(cluster_policy("")).await
    }

    pub async fn start_with(policy: Policy) -> Self {
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let state = AppState::in_memory(policy)
            .expect("in-memory aggregator")
            .with_auth(test_auth(http));
        let st = state.clone();
        tokio::spawn(async move {
            credtrail_aggregator::api::http::serve(http_listener, st, std::future::pending())
                .await
                .unwrap()
        });
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let st = state.clone();
        tokio::spawn(async move {
            credtrail_aggregator::api::grpc::serve(grpc_listener, st, std::future::pending())
                .await
                .unwrap()
        });
        Api { state, http, grpc }
    }

    /// A gRPC client with the admin token.
    pub async fn grpc_client(&self) -> GrpcClient {
        self.grpc_client_as(Some(ADMIN_TOKEN)).await
    }

    /// A gRPC client with `token` (or none).
    pub async fn grpc_client_as(&self, token: Option<&'static str>) -> GrpcClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("gRPC connect");
        QueryServiceClient::with_interceptor(channel, WithToken(token))
    }

    /// A client whose HTTP/2 windows are the protocol minimum (64 KiB), so a
    /// client that stops reading stops the server quickly.
    pub async fn grpc_client_small_window(&self) -> GrpcClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .expect("gRPC connect");
        QueryServiceClient::with_interceptor(channel, WithToken(Some(ADMIN_TOKEN)))
    }

    /// `GET path` → status and body text.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let (s, _, b) = self.request(Method::GET, path, None).await;
        (s, b)
    }

    /// `GET path` and parse the JSON body, asserting `want` status.
    pub async fn get_json(&self, path: &str, want: StatusCode) -> Value {
        let (s, b) = self.get(path).await;
        assert_eq!(s, want, "GET {path}: {b}");
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {b}"))
    }

    /// A request with the admin token and `Content-Type: application/json`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, hyper::HeaderMap, String) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.request_with(
            method,
            path,
            body,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
        )
        .await
    }

    /// A request with exactly these headers (plus the client's `Host`).
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, hyper::HeaderMap, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = client.request(req).await.expect("HTTP request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Ingests audit events (JSON) through the real pipeline; returns the
    /// alerts raised.
    pub async fn ingest(&self, events: Vec<Value>) -> usize {
        let events: Vec<AuditEvent> = events
            .into_iter()
            .map(|e| serde_json::from_value(e).expect("test audit event parses"))
            .collect();
        let report = self
            .state
            .pipeline
            .ingest_audit_batch("webhook", events)
            .await
            .expect("ingest");
        report.alerts.len()
    }
}

/// The test cluster's policy, plus `extra` YAML (top-level keys).
pub fn cluster_policy(extra: &str) -> Policy {
    let yaml = format!(
        "cluster:\n  node_cidrs: [\"127.0.10.0/24\"]\n  pod_cidrs: [\"127.0.20.0/24\"]\n{extra}"
    );
    Policy::from_yaml("api-tests", &yaml).expect("test policy")
}

/// A fixed base time for seeded events.
pub fn base_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A ClusterRoleBinding granting `cluster-admin` to `system:anonymous`,
/// created by `actor` from `ip` at `t` (RequestResponse level): AN1579, critical.
pub fn grant_to_anonymous(
    audit_id: &str,
    name: &str,
    actor: &str,
    ip: &str,
    t: DateTime<Utc>,
) -> Value {
    let binding = json!({
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:anonymous"}]
    });
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse", "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "verb": "create",
        "user": {"username": actor, "groups": ["system:authenticated"]},
        "sourceIPs": [ip], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "clusterrolebindings", "name": name,
                      "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": binding.clone(), "responseObject": binding,
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + Duration::milliseconds(3)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

/// A RoleBinding in `namespace` granting ClusterRole `admin` to user `subject`,
/// created by `actor` from `ip` at `t`: AN1579.
pub fn grant_admin_in_namespace(
    audit_id: &str,
    namespace: &str,
    name: &str,
    actor: &str,
    subject: &str,
    ip: &str,
    t: DateTime<Utc>,
) -> Value {
    let binding = json!({
        "kind": "RoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": subject}]
    });
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse", "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"),
        "verb": "create",
        "user": {"username": actor, "groups": ["system:authenticated"]},
        "sourceIPs": [ip], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "rolebindings", "namespace": namespace, "name": name,
                      "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": binding.clone(), "responseObject": binding,
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + Duration::milliseconds(3)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

/// A bound service-account token: whose, and where it lives.
pub struct BoundToken<'a> {
    pub ns: &'a str,
    pub sa: &'a str,
    pub pod: &'a str,
    pub node: &'a str,
    pub jti: &'a str,
}

/// The token of pod `ci/builder-7f9c` (service account `ci:builder`) on `node-a`.
pub const BUILDER: BoundToken<'static> = BoundToken {
    ns: "ci",
    sa: "builder",
    pod: "builder-7f9c",
    node: "node-a",
    jti: "5d3c8d2e-1f00-4a11-9c22-000000000042",
};

/// A bound service-account token used from `ip` to list secrets: AN1547
/// when `ip` is not where the token lives.
pub fn token_used(audit_id: &str, tok: &BoundToken<'_>, ip: &str, t: DateTime<Utc>) -> Value {
    let BoundToken {
        ns,
        sa,
        pod,
        node,
        jti,
    } = *tok;
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{ns}/secrets"),
        "verb": "list",
        "user": {
            "username": format!("system:serviceaccount:{ns}:{sa}"),
            "uid": "6b3c2a1e-0000-4000-8000-000000000001",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
                "authentication.kubernetes.io/node-name": [node],
                "authentication.kubernetes.io/node-uid": ["0d6f1c9a-0000-4000-8000-000000000002"],
                "authentication.kubernetes.io/pod-name": [pod],
                "authentication.kubernetes.io/pod-uid": ["2c1d0b8a-0000-4000-8000-000000000003"]
            }
        },
        "sourceIPs": [ip], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "secrets", "namespace": ns, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + Duration::milliseconds(2)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}
