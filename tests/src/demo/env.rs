//! Everything the story needs on disk and in the kernel before anything
//! starts: addresses, throw-away certificates, the pod (kubelet folder with
//! its projected token, pod-shaped cgroup), the CI token, the policy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::apisim::token::{self, Issuer};
use crate::certs::{Pki, PkiPaths, write_cert_key};
use crate::fixtures::{KubeletPod, PodCgroup, PodSpec};

/// The story's addresses (all on loopback).
#[derive(Debug, Clone)]
pub struct Addrs {
    /// This node (node range 127.10.0.0/24).
    pub node_ip: IpAddr,
    /// The workload pod (pod range 127.10.1.0/24).
    pub pod_ip: IpAddr,
    /// The API server's in-cluster endpoint (simulator), registered in the
    /// agent's endpoint map.
    pub apiserver: SocketAddr,
    /// The API server's public endpoint (its external load balancer), used
    /// by clients outside the cluster; no node agent watches it.
    pub apiserver_public: SocketAddr,
    /// Where the stolen token is used from: outside the cluster.
    pub outside_ip: IpAddr,
    /// Where the human admin works from: an unknown address.
    pub admin_ip: IpAddr,
    /// The CI runner (runner range 127.20.0.0/24).
    pub ci_ip: IpAddr,
    /// Aggregator listeners.
    pub webhook: SocketAddr,
    pub agent_listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

impl Addrs {
    /// The story's addresses; the API server and aggregator ports as given.
    pub fn new(
        apiserver_port: u16,
        public_port: u16,
        webhook: u16,
        agent: u16,
        api: u16,
        grpc: u16,
    ) -> Self {
        let local = |p| SocketAddr::new(ip(127, 0, 0, 1), p);
        Self {
            node_ip: ip(127, 10, 0, 1),
            pod_ip: ip(127, 10, 1, 5),
            apiserver: SocketAddr::new(ip(127, 10, 0, 2), apiserver_port),
            apiserver_public: SocketAddr::new(ip(127, 30, 0, 1), public_port),
            outside_ip: ip(127, 99, 0, 7),
            admin_ip: ip(127, 66, 0, 9),
            ci_ip: ip(127, 20, 0, 5),
            webhook: local(webhook),
            agent_listen: local(agent),
            api_listen: local(api),
            grpc_listen: local(grpc),
        }
    }

    /// Fixed ports for the demo (printed, so a human can open them).
    pub fn demo() -> Self {
        Self::new(6443, 6443, 18443, 19443, 18080, 19090)
    }

    /// Free ports (tests).
    pub fn free() -> Self {
        let free = |ip: [u8; 4]| crate::harness::free_port(ip).port();
        Self::new(
            free([127, 10, 0, 2]),
            free([127, 30, 0, 1]),
            free([127, 0, 0, 1]),
            free([127, 0, 0, 1]),
            free([127, 0, 0, 1]),
            free([127, 0, 0, 1]),
        )
    }
}

/// Certificate and key files of one identity.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Prepared environment. Dropping it removes the pod folder and cgroup.
pub struct DemoEnv {
    pub dir: PathBuf,
    pub addrs: Addrs,
    pub node: String,
    pub pki: PkiPaths,
    /// PEM texts the in-process simulator needs.
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub cluster_ca_pem: String,
    pub agent: Pair,
    /// The API server's client certificate for the audit webhook.
    pub webhook_client: Pair,
    /// The human admin's kubeconfig credential (CN alice, O sre).
    pub alice: Pair,
    pub issuer: Issuer,
    pub pod: KubeletPod,
    pub cgroup: PodCgroup,
    /// The pod's bound token (a test secret).
    pub pod_token: String,
    pub pod_jti: String,
    /// The CI deployer's token (TokenRequest, bound to nothing).
    pub ci_token: String,
    pub ci_jti: String,
    pub policy: PathBuf,
    /// The query-API token file (`--api-token-file`) and the responder
    /// token in it (the demo reads alerts with it; printed for the page).
    pub api_token_file: PathBuf,
    pub api_token: String,
}

fn pair(dir: &Path, name: &str, ck: &crate::certs::CertKey) -> anyhow::Result<Pair> {
    let p = write_cert_key(dir, name, ck)?;
    Ok(Pair {
        cert: p.cert,
        key: p.key,
    })
}

impl DemoEnv {
    /// Writes certificates, the pod and the policy under `dir`.
    pub fn prepare(dir: &Path, addrs: Addrs) -> anyhow::Result<Self> {
        let node = "demo-node-1".to_string();
        let pki_dir = dir.join("pki");
        let apiserver_ip = addrs.apiserver.ip().to_string();
        let public_ip = addrs.apiserver_public.ip().to_string();
        let pki = Pki::generate(&["127.0.0.1", &apiserver_ip, &public_ip])?;
        let paths = pki.write(&pki_dir)?;
        let agent = pair(&pki_dir, "agent", &pki.agents_ca.agent(&node)?)?;
        let webhook_client = pair(
            &pki_dir,
            "apiserver-webhook",
            &pki.cluster_ca.client("kube-apiserver", &[])?,
        )?;
        let alice = pair(
            &pki_dir,
            "alice",
            &pki.cluster_ca.client("alice", &["sre"])?,
        )?;

        let issuer = Issuer::new();
        let spec = PodSpec::new("shop", "web-7d9f8b-x2v4q", &node, "web");
        let pod = KubeletPod::create(spec, &pki.server_ca.cert_pem())
            .context("making the pod's kubelet folder")?;
        // The pod's token, signed by the simulator's issuer with the pod's claims.
        let s = &pod.spec;
        let claims = token::Claims {
            aud: vec![s.audience.clone()],
            exp: s.exp,
            iat: s.iat,
            iss: s.issuer.clone(),
            jti: s.jti.clone(),
            kubernetes_io: token::K8sClaim {
                namespace: s.namespace.clone(),
                serviceaccount: token::Ref {
                    name: s.service_account.clone(),
                    uid: s.service_account_uid.clone(),
                },
                pod: Some(token::Ref {
                    name: s.name.clone(),
                    uid: s.uid.clone(),
                }),
                node: Some(token::Ref {
                    name: s.node_name.clone(),
                    uid: s.node_uid.clone(),
                }),
                warnafter: Some(s.iat + 3000),
            },
            nbf: s.iat,
            sub: format!(
                "system:serviceaccount:{}:{}",
                s.namespace, s.service_account
            ),
        };
        let pod_token = issuer.sign(&claims);
        std::fs::write(&pod.token_file, &pod_token).context("writing the pod's token")?;
        let container_id: String = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let cgroup = PodCgroup::create("burstable", &s.uid, &container_id)
            .context("making the pod's cgroup")?;

        let (ci_token, ci_claims) = issuer.mint(&token::TokenSpec {
            namespace: "ci".into(),
            service_account: "deployer".into(),
            pod: None,
            node: None,
            lifetime_secs: 3600,
        });
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, policy_yaml(&addrs, &ci_claims.jti))
            .context("writing the policy")?;
        use credtrail_aggregator::auth::{Role, tokens};
        let api_token = tokens::generate().map_err(|_| anyhow::anyhow!("no randomness"))?;
        let api_token_file = dir.join("api-tokens");
        std::fs::write(
            &api_token_file,
            format!("{}\n", tokens::line("demo", Role::Responder, &api_token)),
        )
        .context("writing the API token file")?;
        Ok(Self {
            dir: dir.to_path_buf(),
            node,
            server_cert_pem: pki.server.cert_pem.clone(),
            server_key_pem: pki.server.key_pem.clone(),
            cluster_ca_pem: pki.cluster_ca.cert_pem(),
            pki: paths,
            agent,
            webhook_client,
            alice,
            issuer,
            pod_jti: s.jti.clone(),
            pod,
            cgroup,
            pod_token,
            ci_token,
            ci_jti: ci_claims.jti,
            policy,
            api_token_file,
            api_token,
            addrs,
        })
    }

    /// The pod cgroup's folder (its `cgroup.procs` admits a process).
    pub fn cgroup_dir(&self) -> PathBuf {
        self.cgroup
            .root()
            .join(self.cgroup.rel_path.trim_start_matches('/'))
    }

    /// Watch patterns for the agent: the defaults plus this pod's folder.
    pub fn watch_patterns(&self) -> Vec<String> {
        self.pod.watch_patterns()
    }
}

/// The aggregator policy of the story (docs/POLICY.md).
pub fn policy_yaml(a: &Addrs, ci_jti: &str) -> String {
    format!(
        "# credtrail demo policy: one node, its pods, a CI runner range.
cluster:
  node_cidrs: [\"127.10.0.0/24\"]
  pod_cidrs: [\"127.10.1.0/24\"]
  api_servers: [\"{api}\", \"{public}\"]
trusted_ranges:
  - name: ci-runners
    cidrs: [\"127.20.0.0/24\"]
automation:
  - name: ci-deployer
    username: system:serviceaccount:ci:deployer
    credential_ids: [\"JTI={ci_jti}\"]
    cidrs: [\"127.20.0.0/24\"]
# Humans' kubeconfig credentials roam (laptops, VPN): with no expectation
# for an identity, an outside source is not by itself an AN1547 alert. A
# binding they make from an unknown address still is (AN1579).
detection:
  alert_outside_without_expectation: false
",
        api = a.apiserver,
        public = a.apiserver_public
    )
}
