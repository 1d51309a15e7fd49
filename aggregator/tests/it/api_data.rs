//! Exports, suppressions, inventories and coverage over HTTP, against a real
//! in-process aggregator seeded through GC's pipeline.

use crate::api_support;

use api_support::{
    Api, BUILDER, base_time, grant_admin_in_namespace, grant_to_anonymous, token_used,
};
use chrono::{Duration as Minutes, Utc};
use credtrail_aggregator::api::export::parse_cef;
use credtrail_aggregator::store::AgentHello;
use credtrail_proto::model::{
    CaptureSource, CredentialIdentity, CredentialKind, CredentialRead, JwtClaims, Observation,
    ObservationEvent, Process, TokenIdentity, Workload,
};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const JTI: &str = "5d3c8d2e-1f00-4a11-9c22-000000000042";

async fn seed(api: &Api) -> usize {
    let t0 = base_time();
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(grant_to_anonymous(
            &format!("aud-x-{i}"),
            &format!("x-{i}"),
            &format!("mallory|{i}"),
            "127.0.66.1",
            t0 + Minutes::minutes(i),
        ));
    }
    events.push(grant_admin_in_namespace(
        "aud-rb",
        "team-a",
        "ops",
        "bob",
        "carol",
        "127.0.77.1",
        t0 + Minutes::minutes(9),
    ));
    events.push(token_used(
        "aud-tok",
        &BUILDER,
        "127.0.99.9",
        t0 + Minutes::minutes(10),
    ));
    api.ingest(events).await
}

#[tokio::test]
async fn exports_parse_as_json_lines_and_cef() {
    let api = Api::start().await;
    let raised = seed(&api).await;
    let listed: Vec<Value> = api
        .get_json("/api/v1/alerts?page_size=1000", StatusCode::OK)
        .await["alerts"]
        .as_array()
        .unwrap()
        .clone();

    let (s, h, body) = api
        .request(Method::GET, "/api/v1/export/alerts?format=jsonl", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/x-ndjson");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("credtrail-alerts.jsonl")
    );
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines.len(), raised);
    // The list adds the activity that alerts keep collecting (api/context.rs);
    // an export line is the alert as stored, with its inventory link.
    let listed: Vec<Value> = listed
        .into_iter()
        .map(|mut a| {
            let o = a.as_object_mut().unwrap();
            o.retain(|k, _| !k.starts_with("activity_") && k != "occurrences");
            a
        })
        .collect();
    assert_eq!(
        lines, listed,
        "JSON lines carry the same alerts as the list, in order"
    );

    let (s, _, body) = api
        .request(
            Method::GET,
            "/api/v1/export/alerts?format=cef&analytic=AN1579&limit=3",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let cef: Vec<&str> = body.lines().collect();
    assert_eq!(cef.len(), 3, "limit applies: {body}");
    for (line, alert) in cef
        .iter()
        .zip(listed.iter().filter(|a| a["analytic"] == "AN1579"))
    {
        let (header, ext) = parse_cef(line).unwrap_or_else(|| panic!("not CEF: {line}"));
        assert_eq!(header[0], "0");
        assert_eq!(header[1], "credtrail");
        assert_eq!(header[4], alert["rule"].as_str().unwrap());
        let get = |k: &str| ext.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
        assert_eq!(get("externalId"), alert["id"].as_str());
        // `|` in a username survives the escaping.
        assert_eq!(get("suser"), alert["identity"]["username"].as_str());
        assert_eq!(get("msg"), alert["reason"].as_str());
        assert_eq!(get("src"), alert["source_ip"].as_str());
        assert_eq!(get("cs1"), Some("AN1579"));
    }
}

#[tokio::test]
async fn suppressions_are_created_listed_applied_and_deleted() {
    let api = Api::start().await;
    let expires = (Utc::now() + Minutes::days(1)).to_rfc3339();
    // Missing reason, past expiry, no matcher, bad CIDR, unknown field: 400 naming it.
    let bad = [
        (
            json!({"owner": "soc", "reason": "", "expires": expires, "match": {"username": "eve"}}),
            "reason",
        ),
        (
            json!({"owner": "soc", "reason": "r", "expires": "2020-01-01T00:00:00Z", "match": {"username": "eve"}}),
            "expires",
        ),
        (
            json!({"owner": "soc", "reason": "r", "expires": expires, "match": {}}),
            "match",
        ),
        (
            json!({"owner": "soc", "reason": "r", "expires": expires, "match": {"source_cidr": "10.0.0.0/33"}}),
            "source_cidr",
        ),
        (
            json!({"owner": "soc", "reason": "r", "expires": expires, "match": {"user": "eve"}}),
            "user",
        ),
    ];
    for (body, needle) in bad {
        let (s, _, text) = api
            .request(Method::POST, "/api/v1/suppressions", Some(body.to_string()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text} should name {needle}");
    }

    let create = json!({
        "owner": "soc-team", "reason": "break-glass drill INC-1",
        "expires": expires, "match": {"username": "eve", "analytic": "AN1579"}
    });
    let (s, _, text) = api
        .request(
            Method::POST,
            "/api/v1/suppressions",
            Some(create.to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("api-"));
    assert_eq!(created["origin"], "api");

    let listed = api.get_json("/api/v1/suppressions", StatusCode::OK).await;
    let mine = listed["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("created suppression is listed")
        .clone();
    assert_eq!(mine["owner"], "soc-team");
    assert_eq!(mine["match"]["username"], "eve");
    assert_eq!(mine["active"], true);

    // Detection applies it: eve's grant is stored as suppressed, not raised;
    // mallory's is raised.
    let t = base_time();
    let raised = api
        .ingest(vec![
            grant_to_anonymous("aud-eve", "eve-b", "eve", "127.0.55.1", t),
            grant_to_anonymous("aud-mal", "mal-b", "mallory", "127.0.55.2", t),
        ])
        .await;
    assert_eq!(raised, 1, "eve's alert is suppressed");
    let active = api
        .get_json("/api/v1/alerts?identity=eve", StatusCode::OK)
        .await;
    assert!(active["alerts"].as_array().unwrap().is_empty());
    let all = api
        .get_json(
            "/api/v1/alerts?identity=eve&include_suppressed=true",
            StatusCode::OK,
        )
        .await;
    let sup = &all["alerts"].as_array().unwrap()[0];
    assert_eq!(sup["suppressed_by"], id.as_str());

    let (s, _, _) = api
        .request(Method::DELETE, &format!("/api/v1/suppressions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, text) = api
        .request(Method::DELETE, &format!("/api/v1/suppressions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    // Deleted: eve's next grant alerts again.
    let raised = api
        .ingest(vec![grant_to_anonymous(
            "aud-eve-2",
            "eve-c",
            "eve",
            "127.0.55.1",
            t + Minutes::minutes(1),
        )])
        .await;
    assert_eq!(raised, 1);
}

fn read_observation(node: &str, id: &str) -> Observation {
    Observation {
        id: id.into(),
        time: base_time(),
        node: node.into(),
        event: ObservationEvent::CredentialRead(CredentialRead {
            source: CaptureSource::Tracepoint,
            process: Some(Process {
                pid: 4242,
                tgid: 4242,
                ppid: 1,
                uid: 0,
                comm: "builder".into(),
                exe: Some("/usr/bin/builder".into()),
                ..Default::default()
            }),
            workload: Some(Workload {
                pod_namespace: Some("ci".into()),
                pod_name: Some("builder-7f9c".into()),
                container_id: Some("c0ffee".into()),
                ..Default::default()
            }),
            path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            flags: 0,
            inode: 77,
            reads: 1,
            credential: CredentialIdentity {
                kind: CredentialKind::ServiceAccountToken,
                sha256: Some("ab".repeat(32)),
                token: Some(TokenIdentity {
                    sha256: "ab".repeat(32),
                    claims: Some(JwtClaims {
                        jti: Some(JTI.into()),
                        namespace: Some("ci".into()),
                        service_account_name: Some("builder".into()),
                        pod_name: Some("builder-7f9c".into()),
                        node_name: Some("node-a".into()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            },
        }),
    }
}

#[tokio::test]
async fn inventories_and_coverage_reflect_what_was_ingested() {
    let api = Api::start().await;
    // The agent's node_info says what its hooks cannot see; coverage shows it.
    let node_info: credtrail_proto::model::Observation = serde_json::from_value(json!({
        "id": "node-a/boot1/0", "time": Utc::now(), "node": "node-a", "type": "node_info",
        "name": "node-a", "agent_version": "0.1.0", "kernel_release": "6.18.0",
        "hooks": ["raw_tracepoint_sys_enter"],
        "blind_spots": ["a symlink with an innocent name is not seen"]
    }))
    .unwrap();
    api.state
        .pipeline
        .ingest_observations(
            "node-a",
            vec![node_info, read_observation("node-a", "node-a/boot1/1")],
        )
        .await
        .unwrap();
    seed(&api).await;
    api.state
        .store
        .agent_hello(
            AgentHello {
                node: "node-a".into(),
                agent_version: "0.1.0".into(),
                kernel: "6.18.0".into(),
                hooks: vec!["tracepoint_openat".into(), "cgroup_connect4".into()],
                addresses: vec!["127.0.10.1".into()],
                stream_epoch: 7,
            },
            Utc::now(),
        )
        .await
        .unwrap();

    // Credentials: read on node-a by `builder`, used from 127.0.99.9.
    let creds = api
        .get_json(
            &format!("/api/v1/credentials?credential_id=JTI%3D{JTI}"),
            StatusCode::OK,
        )
        .await;
    let list = creds["credentials"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{creds}");
    let c = &list[0];
    assert_eq!(c["credential_id"], format!("JTI={JTI}"));
    assert_eq!(c["reads"][0]["node"], "node-a");
    assert_eq!(c["reads"][0]["comm"], "builder");
    assert_eq!(c["reads"][0]["pod"], "ci/builder-7f9c");
    assert_eq!(c["uses"][0]["source_ip"], "127.0.99.9");
    assert!(
        c["identities"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccount:ci:builder"))
    );
    let by_node = api
        .get_json("/api/v1/credentials?node=node-zzz", StatusCode::OK)
        .await;
    assert!(by_node["credentials"].as_array().unwrap().is_empty());

    // Nodes.
    let nodes = api.get_json("/api/v1/nodes", StatusCode::OK).await;
    let n = &nodes["nodes"][0];
    assert_eq!(n["name"], "node-a");
    assert_eq!(n["connected"], true);
    assert_eq!(n["hooks"], json!(["tracepoint_openat", "cgroup_connect4"]));
    assert!(n["last_contact_age_seconds"].as_f64().unwrap() < 60.0);

    // Bindings: the grants are in the inventory, high privilege.
    let b = api
        .get_json("/api/v1/bindings?high_privilege_only=true", StatusCode::OK)
        .await;
    let names: Vec<&str> = b["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-0") && names.contains(&"ops"), "{b}");
    let ns = api
        .get_json("/api/v1/bindings?namespace=team-a", StatusCode::OK)
        .await;
    assert_eq!(ns["bindings"].as_array().unwrap().len(), 1, "{ns}");
    assert_eq!(ns["bindings"][0]["role_name"], "admin");
    assert_eq!(ns["bindings"][0]["subjects"][0]["name"], "carol");

    // Coverage: node alive, webhook stream alive, bindings audited with bodies.
    let cov = api.get_json("/api/v1/coverage", StatusCode::OK).await;
    assert_eq!(cov["nodes"][0]["node"], "node-a");
    assert_eq!(cov["nodes"][0]["alive"], true);
    assert_eq!(
        cov["nodes"][0]["blind_spots"],
        json!(["a symlink with an innocent name is not seen"]),
        "{cov}"
    );
    let web = cov["audit_sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "webhook")
        .expect("webhook source listed");
    assert_eq!(web["alive"], true);
    assert_eq!(web["events"], 7);
    assert_eq!(cov["bindings"]["status"], "sufficient", "{cov}");
    // A tiny freshness window makes the same node stale.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let stale = api
        .get_json("/api/v1/coverage?freshness_seconds=0.001", StatusCode::OK)
        .await;
    assert_eq!(stale["nodes"][0]["alive"], false);
}

#[tokio::test]
async fn metadata_only_binding_writes_make_coverage_insufficient() {
    let api = Api::start().await;
    let mut e = grant_to_anonymous("aud-meta", "meta-1", "bob", "127.0.66.9", base_time());
    e["level"] = json!("Metadata");
    e.as_object_mut().unwrap().remove("requestObject");
    e.as_object_mut().unwrap().remove("responseObject");
    api.ingest(vec![e]).await;
    let cov = api.get_json("/api/v1/coverage", StatusCode::OK).await;
    assert_eq!(cov["bindings"]["status"], "insufficient", "{cov}");
    assert_eq!(cov["bindings"]["metadata_only"], 1);
    assert!(
        cov["bindings"]["explanation"]
            .as_str()
            .unwrap()
            .contains("Metadata")
    );
}

#[tokio::test]
async fn no_endpoint_reveals_secret_bytes_from_audited_bodies() {
    let api = Api::start().await;
    // A stolen token creating a Secret, audited at RequestResponse: the body
    // carries the secret's bytes. Nothing the API serves may repeat them.
    let plain = "hunter2-correct-horse-battery";
    let b64 = "aHVudGVyMi1jb3JyZWN0LWhvcnNlLWJhdHRlcnk=";
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let mut e = token_used("aud-secret", &BUILDER, "127.0.99.9", base_time());
    let secret = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "db-pass", "namespace": "ci"},
        "data": {"password": b64},
        "stringData": {"token": jwt, "plain": plain}
    });
    e["level"] = json!("RequestResponse");
    e["verb"] = json!("create");
    e["objectRef"]["name"] = json!("db-pass");
    e["requestObject"] = secret.clone();
    e["responseObject"] = secret;
    assert_eq!(api.ingest(vec![e]).await, 1, "the off-node use alerts");

    let mut outputs = Vec::new();
    for path in [
        "/api/v1/alerts?include_suppressed=true",
        "/api/v1/export/alerts?format=jsonl",
        "/api/v1/export/alerts?format=cef",
        "/api/v1/credentials",
        "/api/v1/bindings?include_deleted=true",
        "/api/v1/coverage",
        "/metrics",
    ] {
        let (s, body) = api.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        outputs.push((path.to_owned(), body));
    }
    let id = serde_json::from_str::<Value>(&outputs[0].1).unwrap()["alerts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    outputs.push((
        "get one".into(),
        api.get(&format!("/api/v1/alerts/{id}")).await.1,
    ));
    let mut c = api.grpc_client().await;
    let grpc = c
        .list_alerts(credtrail_proto::pb::query::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    outputs.push(("grpc ListAlerts".into(), format!("{grpc:?}")));
    for (what, body) in outputs {
        for needle in [plain, b64, jwt, "eyJzdWIi"] {
            assert!(!body.contains(needle), "{what} reveals {needle:?}");
        }
    }
}
