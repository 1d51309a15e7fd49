//! TokenRequests (`mint.rs`, `lineage.rs::token_request`): which requests
//! count as a mint, when a mint's lifetime alerts (CT1547-005), and the
//! minter's places handed to the minted token, judged through the
//! detector's verdicts on real-format audit events.

use serde_json::{Value, json};

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::{AuditEvent, parse_event};
use crate::detect::Detector;
use crate::detect::testkit::*;

/// node-a 127.0.1.1 (pods 127.1.1.0/24), node-b 127.0.1.2 (pods 127.1.2.0/24).
const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const ALICE: &str = "alice@example.com";
const ALICE_IP: &str = "127.50.0.10";
const FAR: &str = "127.200.0.4";
const YEAR: i64 = 365 * 86_400;
/// Where a thief mints from.
const THIEF: &str = "127.201.0.9";
const MINTED: &str = "JTI=0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f";

/// A TokenRequest, as the API server logs it at level Request.
#[derive(Clone)]
pub struct Mint {
    id: String,
    at: i64,
    user: String,
    groups: Vec<String>,
    extra: Value,
    ip: String,
    verb: String,
    resource: String,
    subresource: Option<String>,
    code: i32,
    expiration: Option<i64>,
    issued: Option<String>,
}

impl Mint {
    /// `user` mints a token for `ci/deployer` valid `expiration` seconds.
    fn new(id: &str, at: i64, user: &str, ip: &str, expiration: i64) -> Self {
        Self {
            id: id.into(),
            at,
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            extra: json!({}),
            ip: ip.into(),
            verb: "create".into(),
            resource: "serviceaccounts".into(),
            subresource: Some("token".into()),
            code: 201,
            expiration: Some(expiration),
            issued: Some(MINTED.into()),
        }
    }

    fn event(&self) -> AuditEvent {
        let sub = self
            .subresource
            .as_ref()
            .map_or(String::new(), |s| format!("/{s}"));
        let mut spec = json!({"audiences": ["https://kubernetes.default.svc"],
            "boundObjectRef": {"kind": "Secret", "name": "deployer-ref", "apiVersion": "v1"}});
        if let Some(e) = self.expiration {
            spec["expirationSeconds"] = json!(e);
        }
        let mut annotations = json!({"authorization.k8s.io/decision": "allow"});
        if let Some(i) = &self.issued {
            annotations["authentication.kubernetes.io/issued-credential-id"] = json!(i);
        }
        let v = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
            "auditID": self.id, "stage": "ResponseComplete",
            "requestURI": format!("/api/v1/namespaces/ci/{}/deployer{sub}", self.resource),
            "verb": self.verb,
            "user": {"username": self.user, "groups": self.groups, "extra": self.extra},
            "sourceIPs": [self.ip],
            "userAgent": "kubectl/v1.32.0",
            "objectRef": {"resource": self.resource, "namespace": "ci", "name": "deployer",
                "subresource": self.subresource, "apiVersion": "v1"},
            "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "spec": spec},
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": ts_of(self.at), "stageTimestamp": ts_of(self.at),
            "annotations": annotations,
        });
        parse_event(v.to_string().as_bytes()).unwrap()
    }
}

fn ts_of(at: i64) -> String {
    t(at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn mint(d: &mut Detector, m: &Mint) -> Vec<Alert> {
    let mut ch = crate::detect::Changes::default();
    d.judge(&m.event(), &mut ch)
}

/// A request made with the minted token (`ci/deployer`, no claims of a place).
fn use_minted(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, "system:serviceaccount:ci:deployer", ip).cred(MINTED)
}

/// Two nodes whose agents reported.
fn cluster() -> Detector {
    let mut d = detector(POLICY);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
            node_info("node-b", -600, &["127.0.1.2"], &["127.1.2.0/24"]),
        ],
    );
    d
}

#[test]
fn a_year_long_token_minted_by_a_person_alerts_with_its_lifetime_and_minting() {
    let mut d = cluster();
    let alerts = mint(&mut d, &Mint::new("m1", 0, ALICE, ALICE_IP, YEAR));
    assert_eq!(rules(&alerts), ["CT1547-005"]);
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.identity.username, ALICE);
    assert_eq!(
        a.reason,
        format!(
            "{ALICE} minted a token for system:serviceaccount:ci:deployer valid 8760h \
             ({YEAR}s) from {ALICE_IP}, outside approved automation (limit 24h)."
        )
    );
    let m = &a.details["minted"];
    assert_eq!(m["jti"], MINTED, "{}", a.details);
    assert_eq!(m["minter"], ALICE);
    assert_eq!(m["source_ip"], ALICE_IP);
    assert_eq!(m["bound_to"], "Secret/deployer-ref");
    assert_eq!(m["expiration_seconds"], YEAR);
    assert_eq!(m["audit_id"], "m1");
    assert_eq!(a.details["limit_seconds"], 86_400);
    assert_eq!(
        a.details["incident"]["id"], a.id,
        "the first alert opens its incident"
    );
}

#[test]
fn only_a_lifetime_past_the_limit_alerts() {
    for (secs, alerts) in [
        (3_600, false),
        (86_400, false),
        (86_401, true),
        (YEAR, true),
    ] {
        let mut d = cluster();
        let got = mint(&mut d, &Mint::new("m", 0, ALICE, ALICE_IP, secs));
        assert_eq!(!got.is_empty(), alerts, "{secs}s: {:?}", rules(&got));
    }
    // A limit of zero turns the rule off.
    let mut d = detector(&format!(
        "{POLICY}detection:\n  max_token_lifetime: \"0\"\n"
    ));
    assert!(mint(&mut d, &Mint::new("m", 0, ALICE, ALICE_IP, YEAR)).is_empty());
    // No expirationSeconds: the API server's default, nothing to judge.
    let mut d = cluster();
    let mut m = Mint::new("m", 0, ALICE, ALICE_IP, YEAR);
    m.expiration = None;
    assert!(mint(&mut d, &m).is_empty());
}

#[test]
fn approved_automation_and_kubelets_mint_long_tokens_without_an_alert() {
    let ci = format!(
        "{POLICY}automation:\n  - name: ci\n    username: {ALICE}\n    credential_ids: [\"*\"]\n    cidrs: [127.50.0.0/24]\n"
    );
    let mut d = detector(&ci);
    let mut m = Mint::new("m1", 0, ALICE, ALICE_IP, YEAR);
    m.extra = json!({"authentication.kubernetes.io/credential-id": ["X509SHA256=aa"]});
    assert!(mint(&mut d, &m).is_empty(), "approved automation");
    // The same identity from outside its automation range is not approved.
    let mut far = m.clone();
    far.ip = FAR.into();
    assert_eq!(rules(&mint(&mut d, &far)), ["CT1547-005"]);

    let mut d = cluster();
    let mut kubelet = Mint::new("k1", 0, "system:node:node-a", "127.0.1.1", YEAR);
    kubelet.groups = vec!["system:nodes".into(), "system:authenticated".into()];
    assert!(mint(&mut d, &kubelet).is_empty(), "a kubelet's mint");
}

#[test]
fn only_a_successful_create_of_a_token_subresource_naming_its_jti_is_a_mint() {
    let base = Mint::new("m", 0, ALICE, ALICE_IP, YEAR);
    let mut cases = Vec::new();
    let mut get = base.clone();
    get.verb = "get".into();
    cases.push(("get", get));
    let mut secrets = base.clone();
    secrets.resource = "secrets".into();
    cases.push(("secrets/token", secrets));
    let mut no_sub = base.clone();
    no_sub.subresource = None;
    cases.push(("no subresource", no_sub));
    let mut other_sub = base.clone();
    other_sub.subresource = Some("status".into());
    cases.push(("serviceaccounts/status", other_sub));
    let mut failed = base.clone();
    failed.code = 422;
    cases.push(("failed", failed));
    let mut unnamed = base.clone();
    unnamed.issued = None;
    cases.push(("no issued credential id", unnamed));
    for (what, m) in cases {
        let mut d = cluster();
        let alerts = mint(&mut d, &m);
        assert!(alerts.is_empty(), "{what}: {:?}", rules(&alerts));
        // Nor is the token it did not mint given the minter's places.
        let (alerts, _) = judge(&mut d, &use_minted("u", 60, ALICE_IP));
        assert!(
            alerts.iter().all(|a| a.details["minted_by"].is_null()),
            "{what}"
        );
    }
}

#[test]
fn a_token_minted_without_an_alert_is_expected_where_its_minter_stood() {
    let mut d = cluster();
    assert!(mint(&mut d, &Mint::new("m1", 0, ALICE, ALICE_IP, 3_600)).is_empty());
    let (alerts, _) = judge(&mut d, &use_minted("u1", 60, ALICE_IP));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    let (alerts, _) = judge(&mut d, &use_minted("u2", 800, FAR));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    let a = &alerts[0];
    assert!(
        a.expected.iter().any(|e| e.kind == "cidr"
            && e.value == format!("{ALICE_IP}/32")
            && e.basis == format!("minted by {ALICE}")),
        "{:?}",
        a.expected
    );
    assert_eq!(a.details["minted_by"]["minter"], ALICE, "{}", a.details);
}

#[test]
fn a_lifetime_alert_does_not_take_the_minters_place_from_the_token() {
    // CT1547-005 is about the token's lifetime, not where it was minted:
    // the minter's address stays an expected place of the token.
    let mut d = cluster();
    assert_eq!(
        rules(&mint(&mut d, &Mint::new("m1", 0, ALICE, ALICE_IP, YEAR))),
        ["CT1547-005"]
    );
    let (alerts, _) = judge(&mut d, &use_minted("u1", 60, ALICE_IP));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
}

/// web-1 (pod-uid-web) on node-a, whose process 100 read its token.
const WEB: PodRef<'static> = Some(("shop", "web-1", "pod-uid-web", "ctr-web"));
const WEB_SA: &str = "system:serviceaccount:shop:web";

fn web_cluster() -> Detector {
    let mut d = cluster();
    observe(
        &mut d,
        &[
            token_read(
                "node-a",
                "node-a/r/1",
                -60,
                100,
                "web",
                WEB,
                "jti-web",
                ("shop", "web"),
            ),
            // Two pods of node-a the agent placed by their connections.
            connect("node-a", "node-a/c/1", -50, 100, "web", "127.1.1.5", WEB),
            connect(
                "node-a",
                "node-a/c/2",
                -50,
                200,
                "other",
                "127.1.1.6",
                Some(("shop", "other-1", "pod-uid-other", "ctr-other")),
            ),
        ],
    );
    d
}

/// web-1 mints a token with its own bound token, from its pod's address.
fn web_mint() -> Mint {
    let mut m = Mint::new("m1", 0, WEB_SA, "127.1.1.5", 3_600);
    m.extra = json!({
        "authentication.kubernetes.io/credential-id": ["JTI=jti-web"],
        "authentication.kubernetes.io/node-name": ["node-a"],
        "authentication.kubernetes.io/pod-name": ["web-1"],
        "authentication.kubernetes.io/pod-uid": ["pod-uid-web"],
    });
    m
}

#[test]
fn a_token_minted_by_a_pod_is_that_pods_and_carries_its_minters_reads() {
    let mut d = web_cluster();
    assert!(mint(&mut d, &web_mint()).is_empty());
    // From the minter's pod: expected.
    let (alerts, _) = judge(&mut d, &use_minted("u1", 60, "127.1.1.5"));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    // From another pod of the minter's node: another pod's use.
    let (alerts, _) = judge(&mut d, &use_minted("u2", 70, "127.1.1.6"));
    assert_eq!(rules(&alerts), ["CT1547-001"]);
    assert_eq!(alerts[0].source_class, SourceClass::OtherPod);
    // The read of the minting credential is the minted token's evidence.
    let (alerts, _) = judge(&mut d, &use_minted("u3", 800, FAR));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    let ev = &alerts[0].evidence;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].kind.as_str(), ev[0].node.as_str(), ev[0].pid),
        ("credential_read", "node-a", Some(100))
    );
}

#[test]
fn a_stolen_tokens_mint_and_the_minted_tokens_use_are_one_incident() {
    let mut d = web_cluster();
    // web-1's token used from outside: an incident opens.
    let (first, _) = judge(
        &mut d,
        &Req::new("o1", 0, WEB_SA, FAR).bound("jti-web", "node-a", "web-1", "pod-uid-web"),
    );
    assert_eq!(rules(&first), ["CT1547-002"]);
    let incident = first[0].id.clone();
    // From there the thief mints a new token with it (alerted as a use too).
    let mut m = web_mint();
    m.ip = THIEF.into();
    m.at = 700;
    let alerts = mint(&mut d, &m);
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert_eq!(alerts[0].details["incident"]["id"], incident.as_str());
    // A mint judged a misuse gives its address to nobody: the minted token
    // used from there alerts too, and joins the same incident.
    let (alerts, _) = judge(&mut d, &use_minted("u1", 760, THIEF));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    let inc = &alerts[0].details["incident"];
    assert_eq!(inc["id"], incident.as_str(), "{inc}");
    assert_eq!(
        inc["minters"],
        json!([format!("{WEB_SA} (JTI=jti-web) from {THIEF}")])
    );
    assert_eq!(inc["credentials"], json!(["JTI=jti-web", MINTED]));
    assert_eq!(inc["sources"], json!([FAR, THIEF]), "each once");
    assert_eq!(inc["alerts"].as_array().unwrap().len(), 3, "{inc}");
    assert_eq!(
        inc["readers"],
        json!(["web (pid 100) on node-a pod shop/web-1"]),
        "only the reads, not the connections"
    );
    assert_eq!(
        alerts[0].details["minted_by"]["minter"], WEB_SA,
        "the rule's own details stay beside the incident"
    );
}
