//! `credtrail-aggregator`: audit ingest, agent observations, detection, alert
//! store and query API (`serve`); offline detection over saved logs (`replay`);
//! policy validation (`check-policy`).

mod analyst;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use credtrail_aggregator::agents::identity::AgentAuth;
use credtrail_aggregator::audit::InputFormat;
use credtrail_aggregator::auth::config::ApiAuthConfig;
use credtrail_aggregator::auth::kube::KubeConfig;
use credtrail_aggregator::auth::{Role, tokens};
use credtrail_aggregator::ingest::tls::TlsPaths;
use credtrail_aggregator::ingest::webhook::DEFAULT_BODY_LIMIT;
use credtrail_aggregator::policy::{Policy, parse_duration};
use credtrail_aggregator::replay::{ReplayInput, replay};
use credtrail_aggregator::server::{ServeConfig, ServeExtras, ServeLimits, serve_with};
use credtrail_aggregator::store::Synchronous;

#[derive(Parser, Debug)]
#[command(
    name = "credtrail-aggregator",
    version,
    about = "credtrail aggregator: joins Kubernetes audit events with node agents' observations and raises AN1547/AN1579 alerts"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the aggregator: audit webhook, audit log tailing, agent stream, query APIs.
    Serve(Box<ServeArgs>),
    /// Run detection offline over saved audit logs; print alerts (time order) as JSON lines, OCSF or CEF.
    Replay(ReplayArgs),
    /// Replay the evaluation corpus (eval/scenarios) and print the confusion tables; exit non-zero on any wrong scenario.
    Eval {
        /// The folder of scenario folders.
        dir: PathBuf,
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Copy the database, consistently, while `serve` runs (SQLite `VACUUM INTO`); `-` writes
    /// the copy to standard output (`kubectl exec ... backup - > credtrail.db`). docs/OPERATIONS.md.
    Backup {
        /// The database to copy.
        #[arg(long, env = "CREDTRAIL_DB", default_value = "credtrail.db")]
        db: PathBuf,
        /// Where to write the copy (must not exist), or `-` for standard output.
        dest: PathBuf,
    },
    /// Validate a policy file and print what it configures.
    CheckPolicy {
        /// The policy file (YAML, see docs/POLICY.md).
        #[arg(env = "CREDTRAIL_POLICY")]
        policy: PathBuf,
    },
    /// Make a query-API token: append its line (name, role, SHA-256) to the
    /// token file and print the token once on stdout.
    ApiToken(ApiTokenArgs),
    /// Analyst CLI over the HTTP API: `alerts list|show|ack|close|assign|note` (docs/API.md, *Triage*).
    Alerts(Box<analyst::AlertsArgs>),
}

#[derive(Args, Debug)]
struct ApiTokenArgs {
    /// Who holds it (recorded on the suppressions it creates).
    #[arg(long)]
    name: String,
    /// viewer (reads, exports, live stream), responder (also suppressions), admin.
    #[arg(long)]
    role: String,
    /// The token file to append to (created, mode 0600, if missing).
    #[arg(long)]
    append: PathBuf,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// SQLite database file (alerts, inventories, offsets); created if missing.
    #[arg(long, env = "CREDTRAIL_DB", default_value = "credtrail.db")]
    db: PathBuf,
    /// SQLite synchronous mode: `full` syncs every commit (a webhook 2xx survives power loss);
    /// `normal` syncs at checkpoints (survives a process crash only; faster).
    #[arg(
        long,
        env = "CREDTRAIL_DB_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    db_synchronous: Synchronous,
    /// Detection policy file (YAML, docs/POLICY.md). Without it: no ranges, no allowlists.
    #[arg(long, env = "CREDTRAIL_POLICY")]
    policy: Option<PathBuf>,
    /// Delete alerts, audit events and observations older than this (e.g. 30d, 12h); unset keeps all.
    #[arg(long, env = "CREDTRAIL_RETENTION")]
    retention: Option<String>,
    /// Address of the HTTPS audit webhook (what --audit-webhook-config-file points at); `off` disables it.
    #[arg(long, env = "CREDTRAIL_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    webhook_listen: String,
    /// File of bearer tokens the API server may present to the webhook (one per line).
    #[arg(long, env = "CREDTRAIL_WEBHOOK_TOKEN_FILE")]
    webhook_token_file: Option<PathBuf>,
    /// CA whose client certificates authenticate the API server at the webhook.
    #[arg(long, env = "CREDTRAIL_WEBHOOK_CLIENT_CA")]
    webhook_client_ca: Option<PathBuf>,
    /// Subject CN a webhook client certificate may have (repeat or comma-separate);
    /// default: kube-apiserver-audit (credtrail's deploy), kube-apiserver, kube-apiserver-kubelet-client,
    /// system:kube-apiserver, apiserver.
    #[arg(long, env = "CREDTRAIL_WEBHOOK_CLIENT_SUBJECT", value_delimiter = ',')]
    webhook_client_subject: Vec<String>,
    /// Largest webhook body accepted, in bytes (larger: 413).
    #[arg(long, env = "CREDTRAIL_WEBHOOK_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    webhook_body_limit: usize,
    /// Serving certificate (PEM chain) of the webhook and the agent listener.
    #[arg(long, env = "CREDTRAIL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CREDTRAIL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// How often the TLS files (certificates, keys, client CAs) are looked at
    /// for a renewal, in seconds; a change is loaded without a restart.
    #[arg(long, env = "CREDTRAIL_TLS_RELOAD_CHECK", default_value_t = 10)]
    tls_reload_check: u64,
    /// How often the --policy file is looked at for a change, in seconds (a valid change is put
    /// in force without a restart; an invalid one is logged and the previous policy stays); 0: never.
    #[arg(long, env = "CREDTRAIL_POLICY_RELOAD_CHECK", default_value_t = 10)]
    policy_reload_check: u64,
    /// Audit log file(s) to tail (--audit-log-path of the API server); repeat or comma-separate.
    #[arg(long, env = "CREDTRAIL_AUDIT_LOG_PATH", value_delimiter = ',')]
    audit_log_path: Vec<PathBuf>,
    /// How the tailed audit log's lines are read: native events, or one cloud
    /// wrapper document per line (gke-cloud-logging, eks-cloudwatch, aks-event-hubs).
    #[arg(
        long,
        env = "CREDTRAIL_AUDIT_LOG_FORMAT",
        value_enum,
        default_value = "native"
    )]
    audit_log_format: InputFormat,
    /// Enables EKS delivery through Amazon Data Firehose at /v1/firehose/eks on the
    /// webhook listener: the file holds the access key(s) configured on the stream.
    #[arg(long, env = "CREDTRAIL_FIREHOSE_ACCESS_KEY_FILE")]
    firehose_access_key_file: Option<PathBuf>,
    /// Enables GKE delivery through Pub/Sub push at /v1/pubsub/gke on the webhook
    /// listener: Google's signing keys (JWKS, a copy of https://www.googleapis.com/oauth2/v3/certs).
    #[arg(long, env = "CREDTRAIL_PUBSUB_JWKS_FILE", requires_all = ["pubsub_audience", "pubsub_service_account"])]
    pubsub_jwks_file: Option<PathBuf>,
    /// The push subscription's OIDC audience.
    #[arg(long, env = "CREDTRAIL_PUBSUB_AUDIENCE", requires = "pubsub_jwks_file")]
    pubsub_audience: Option<String>,
    /// The push subscription's service account (the token's verified `email`).
    #[arg(
        long,
        env = "CREDTRAIL_PUBSUB_SERVICE_ACCOUNT",
        requires = "pubsub_jwks_file"
    )]
    pubsub_service_account: Option<String>,
    /// Address of the agents' gRPC stream (mTLS); `off` disables it.
    #[arg(long, env = "CREDTRAIL_AGENT_LISTEN", default_value = "0.0.0.0:9443")]
    agent_listen: String,
    /// CA that signs agents' client certificates (required by the agent listener).
    #[arg(long, env = "CREDTRAIL_AGENT_CLIENT_CA")]
    agent_client_ca: Option<PathBuf>,
    /// How agents prove their node: `certificate` (kubelet-style client certificate chaining to
    /// --agent-client-ca), `token` (projected ServiceAccount token, audience `credtrail`, over
    /// server-authenticated TLS), or `either`.
    #[arg(long, env = "CREDTRAIL_AGENT_AUTH", default_value = "certificate", value_parser = ["certificate", "token", "either"])]
    agent_auth: String,
    /// Verify agents' tokens against this JWKS file (the service-account issuer's keys:
    /// `kubectl get --raw /openid/v1/jwks`; re-read when it changes). Without it: TokenReview.
    #[arg(long, env = "CREDTRAIL_AGENT_TOKEN_JWKS")]
    agent_token_jwks: Option<PathBuf>,
    /// The service-account issuer agents' tokens must name (`--service-account-issuer` of the
    /// API server; `kubectl get --raw /.well-known/openid-configuration`); with --agent-token-jwks.
    #[arg(long, env = "CREDTRAIL_AGENT_TOKEN_ISSUER")]
    agent_token_issuer: Option<String>,
    /// Namespace of the agent DaemonSet's ServiceAccount.
    #[arg(long, env = "CREDTRAIL_AGENT_NAMESPACE", default_value = "credtrail")]
    agent_namespace: String,
    /// The agent DaemonSet's ServiceAccount (tokens of any other are refused).
    #[arg(
        long,
        env = "CREDTRAIL_AGENT_SERVICE_ACCOUNT",
        default_value = "credtrail-agent"
    )]
    agent_service_account: String,
    /// Longest lifetime (exp - iat) of an agent token verified with --agent-token-jwks.
    #[arg(
        long,
        env = "CREDTRAIL_AGENT_TOKEN_MAX_LIFETIME",
        default_value = "24h"
    )]
    agent_token_max_lifetime: String,
    /// Address of the HTTP/JSON API, web page, /metrics, /healthz; `off` disables it.
    #[arg(long, env = "CREDTRAIL_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: String,
    /// Address of the gRPC QueryService; `off` disables it.
    #[arg(long, env = "CREDTRAIL_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
    grpc_listen: String,
    /// Query-API tokens: `<name> <role> sha256:<hex>` lines (make them with `api-token`).
    #[arg(long, env = "CREDTRAIL_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Authenticate query-API bearer tokens with the API server's TokenReview and decide
    /// with SubjectAccessReview on `alerts.credtrail.io` (in-cluster ServiceAccount).
    #[arg(long, env = "CREDTRAIL_API_KUBE_AUTH")]
    api_kube_auth: bool,
    /// API server for --api-kube-auth outside a pod (https://host:port); with --api-kube-ca
    /// and --api-kube-token-file.
    #[arg(long, env = "CREDTRAIL_API_KUBE_SERVER", requires_all = ["api_kube_ca", "api_kube_token_file"])]
    api_kube_server: Option<String>,
    /// CA of the API server's certificate (--api-kube-server).
    #[arg(long, env = "CREDTRAIL_API_KUBE_CA", requires = "api_kube_server")]
    api_kube_ca: Option<PathBuf>,
    /// The aggregator's own token for TokenReview calls (--api-kube-server).
    #[arg(
        long,
        env = "CREDTRAIL_API_KUBE_TOKEN_FILE",
        requires = "api_kube_server"
    )]
    api_kube_token_file: Option<PathBuf>,
    /// Namespace of the SubjectAccessReviews with --api-kube-server (in a pod: the pod's own).
    #[arg(
        long,
        env = "CREDTRAIL_API_KUBE_NAMESPACE",
        requires = "api_kube_server"
    )]
    api_kube_namespace: Option<String>,
    /// Local development only: no authentication on the query API (everyone is admin);
    /// refused unless both query listeners are on loopback.
    #[arg(long, env = "CREDTRAIL_API_INSECURE_NO_AUTH")]
    api_insecure_no_auth: bool,
    /// Host names the query API answers to (Host header), besides loopback names and the
    /// listen address; repeat or comma-separate; `*` accepts any.
    #[arg(long, env = "CREDTRAIL_API_ALLOWED_HOST", value_delimiter = ',')]
    api_allowed_host: Vec<String>,
    /// Require a token (role viewer) on /metrics.
    #[arg(long, env = "CREDTRAIL_METRICS_REQUIRE_AUTH")]
    metrics_require_auth: bool,
    /// Serve both query listeners over TLS with this certificate (PEM chain); with --api-tls-key.
    #[arg(long, env = "CREDTRAIL_API_TLS_CERT", requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --api-tls-cert.
    #[arg(long, env = "CREDTRAIL_API_TLS_KEY", requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// CA whose client certificates may authenticate to the query API (needs --api-tls-cert).
    #[arg(long, env = "CREDTRAIL_API_CLIENT_CA")]
    api_client_ca: Option<PathBuf>,
    /// Client-certificate subject → role: `CN=<name>:<role>` or `O=<group>:<role>`; repeat.
    #[arg(long, env = "CREDTRAIL_API_CERT_ROLE", value_delimiter = ',')]
    api_cert_role: Vec<String>,
    /// Time a client has to finish its TLS handshake (e.g. 10s).
    #[arg(long, env = "CREDTRAIL_HANDSHAKE_TIMEOUT", default_value = "10s")]
    handshake_timeout: String,
    /// Time a client has to send a request's headers (HTTP/1) or its HTTP/2 preface.
    #[arg(long, env = "CREDTRAIL_HEADER_TIMEOUT", default_value = "10s")]
    header_timeout: String,
    /// Time a client has to send a whole request body; default: the header
    /// timeout plus the listener's body limit at 256 KiB/s.
    #[arg(long, env = "CREDTRAIL_BODY_TIMEOUT")]
    body_timeout: Option<String>,
    /// Concurrent connections per listener; more wait in the kernel's backlog.
    #[arg(long, env = "CREDTRAIL_MAX_CONNECTIONS", default_value_t = credtrail_aggregator::listen::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Concurrent connections of the agent stream listener: one long-lived stream per node,
    /// so above the cluster's node count.
    #[arg(long, env = "CREDTRAIL_AGENT_MAX_CONNECTIONS", default_value_t = credtrail_aggregator::listen::DEFAULT_AGENT_MAX_CONNECTIONS)]
    agent_max_connections: usize,
    /// Concurrent connections from one client address (IPv6: one /64) on each listener but the
    /// agent stream (agents are pods; many nodes' pods can share a /64); 0: no cap.
    #[arg(long, env = "CREDTRAIL_MAX_CONNECTIONS_PER_IP", default_value_t = credtrail_aggregator::listen::DEFAULT_MAX_PER_IP)]
    max_connections_per_ip: usize,
    /// A gRPC connection (query API, agent stream) with no open stream for this long is closed
    /// (GOAWAY), even if it answers keep-alive pings; running streams are never cut.
    #[arg(long, env = "CREDTRAIL_IDLE_TIMEOUT", default_value = "60s")]
    idle_timeout: String,
    /// How long connections and live streams get to finish at shutdown.
    #[arg(long, env = "CREDTRAIL_SHUTDOWN_GRACE", default_value = "10s")]
    shutdown_grace: String,
    /// Read-only SQLite connections serving queries (health checks never wait for them).
    #[arg(long, env = "CREDTRAIL_QUERY_READERS", default_value_t = credtrail_aggregator::store::DEFAULT_READERS)]
    query_readers: usize,
    /// A query running longer than this is interrupted and answered 503.
    #[arg(long, env = "CREDTRAIL_QUERY_TIMEOUT", default_value = "10s")]
    query_timeout: String,
    /// Where alerts' `runbook_url` points: your copy of docs/RUNBOOKS.md (the rule id in lower
    /// case is appended as the anchor).
    #[arg(long, env = "CREDTRAIL_RUNBOOK_BASE_URL")]
    runbook_base_url: Option<String>,
    /// Push new alerts to syslog (RFC 5424 + CEF, TCP/TLS) and webhooks (JSON, Slack,
    /// Alertmanager): a YAML file of sinks (docs/INTEGRATIONS.md). Secrets come from files it names.
    #[arg(long, env = "CREDTRAIL_OUTPUTS")]
    outputs: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Audit log file(s): JSON lines, an Event or an EventList (`-` = stdin).
    #[arg(long, required = true, num_args = 1..)]
    audit: Vec<PathBuf>,
    /// Agents' JSON-lines observation file(s) (docs/OBSERVATIONS.md).
    #[arg(long, num_args = 1..)]
    observations: Vec<PathBuf>,
    /// Detection policy file (YAML, docs/POLICY.md).
    #[arg(long, env = "CREDTRAIL_POLICY")]
    policy: Option<PathBuf>,
    /// Format of the audit files; wrappers from cloud log pipelines need their option.
    #[arg(long, value_enum, default_value = "native")]
    input_format: InputFormat,
    /// Also print alerts silenced by suppressions or maintenance windows.
    #[arg(long)]
    include_suppressed: bool,
    /// Output: jsonl (the API's alert JSON), ocsf (OCSF Detection Finding), cef (ArcSight CEF); one alert per line.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: credtrail_aggregator::encode::Format,
}

fn listen(s: &str, flag: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--{flag} {s:?}: expected ip:port or `off`"))
}

fn serve_config(a: ServeArgs) -> anyhow::Result<ServeConfig> {
    credtrail_aggregator::ingest::tls_watch::set_check_interval(std::time::Duration::from_secs(
        a.tls_reload_check.max(1),
    ));
    credtrail_aggregator::policy::watch::set_check_interval(std::time::Duration::from_secs(
        a.policy_reload_check,
    ));
    let retention = a
        .retention
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--retention: {e}"))?;
    let webhook_listen = listen(&a.webhook_listen, "webhook-listen")?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let agent_listen = listen(&a.agent_listen, "agent-listen")?;
    let kube = match (&a.api_kube_server, a.api_kube_auth) {
        (Some(server), _) => Some(KubeConfig {
            server: server.clone(),
            ca: a.api_kube_ca.clone().context("--api-kube-ca")?,
            token_file: a
                .api_kube_token_file
                .clone()
                .context("--api-kube-token-file")?,
            namespace: a.api_kube_namespace.clone(),
        }),
        (None, true) => {
            Some(KubeConfig::in_cluster().map_err(|e| anyhow::anyhow!("--api-kube-auth: {e}"))?)
        }
        (None, false) => None,
    };
    let agent_identity = agent_identity(&a, kube.as_ref())?;
    let api_auth = ApiAuthConfig {
        token_file: a.api_token_file,
        kube,
        insecure_no_auth: a.api_insecure_no_auth,
        allowed_hosts: a.api_allowed_host,
        metrics_require_auth: a.metrics_require_auth,
        tls_cert: a.api_tls_cert,
        tls_key: a.api_tls_key,
        client_ca: a.api_client_ca,
        cert_roles: a.api_cert_role,
    };
    let dur = |flag: &str, v: &str| -> anyhow::Result<std::time::Duration> {
        let d = parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
        d.to_std()
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{flag} {v:?}: must be positive"))
    };
    anyhow::ensure!(
        a.max_connections > 0,
        "--max-connections: must be at least 1"
    );
    anyhow::ensure!(
        a.agent_max_connections > 0,
        "--agent-max-connections: must be at least 1"
    );
    anyhow::ensure!(a.query_readers > 0, "--query-readers: must be at least 1");
    let limits = ServeLimits {
        handshake_timeout: dur("handshake-timeout", &a.handshake_timeout)?,
        header_timeout: dur("header-timeout", &a.header_timeout)?,
        body_timeout: a
            .body_timeout
            .as_deref()
            .map(|v| dur("body-timeout", v))
            .transpose()?,
        max_connections: a.max_connections,
        agent_max_connections: a.agent_max_connections,
        max_connections_per_ip: a.max_connections_per_ip,
        shutdown_grace: dur("shutdown-grace", &a.shutdown_grace)?,
        idle_timeout: dur("idle-timeout", &a.idle_timeout)?,
        query_readers: a.query_readers,
        query_timeout: dur("query-timeout", &a.query_timeout)?,
    };
    if let Some(url) = &a.runbook_base_url {
        credtrail_aggregator::detect::rules::set_runbook_base(url)
            .map_err(|e| anyhow::anyhow!("--runbook-base-url: {e}"))?;
    }
    Ok(ServeConfig {
        limits,
        db: a.db,
        db_synchronous: a.db_synchronous,
        policy: a.policy,
        retention,
        webhook_listen,
        webhook_tls: tls.clone().map(|(cert, key)| TlsPaths {
            cert,
            key,
            client_ca: a.webhook_client_ca.clone(),
        }),
        webhook_token_file: a.webhook_token_file,
        webhook_body_limit: a.webhook_body_limit,
        webhook_client_subjects: a.webhook_client_subject,
        audit_log_paths: a.audit_log_path,
        agent_listen,
        agent_tls: match (&agent_identity, tls) {
            (AgentAuth::Token(_), Some((c, k))) => {
                Some((c, k, a.agent_client_ca.unwrap_or_default()))
            }
            (_, tls) => tls.zip(a.agent_client_ca).map(|((c, k), ca)| (c, k, ca)),
        },
        agent_identity,
        api_listen: listen(&a.api_listen, "api-listen")?,
        grpc_listen: listen(&a.grpc_listen, "grpc-listen")?,
        cloud: credtrail_aggregator::server::CloudInputs {
            audit_log_format: a.audit_log_format,
            firehose_access_key_file: a.firehose_access_key_file,
            pubsub: a.pubsub_jwks_file.map(|jwks_file| {
                credtrail_aggregator::ingest::oidc::OidcConfig {
                    jwks_file,
                    audience: a.pubsub_audience.unwrap_or_default(),
                    email: a.pubsub_service_account.unwrap_or_default(),
                }
            }),
        },
        api_auth,
    })
}

/// How agents authenticate, from `--agent-auth` and the token settings.
fn agent_identity(a: &ServeArgs, kube: Option<&KubeConfig>) -> anyhow::Result<AgentAuth> {
    use credtrail_aggregator::agents::identity::{TokenIdentity, TokenVerifier};
    use credtrail_aggregator::auth::jwks::{Expect, JwksFile};
    if a.agent_auth == "certificate" {
        return Ok(AgentAuth::Certificate);
    }
    let verifier = match &a.agent_token_jwks {
        Some(path) => {
            let issuer = a
                .agent_token_issuer
                .clone()
                .context("--agent-token-jwks needs --agent-token-issuer")?;
            let keys = JwksFile::open(path)
                .with_context(|| format!("--agent-token-jwks {}", path.display()))?;
            let mut expect = Expect::new(
                vec![issuer],
                vec![credtrail_aggregator::agents::identity::AUDIENCE.to_owned()],
            );
            let max = parse_duration(&a.agent_token_max_lifetime)
                .map_err(|e| anyhow::anyhow!("--agent-token-max-lifetime: {e}"))?;
            expect.max_lifetime = max.to_std().ok().filter(|d| !d.is_zero());
            TokenVerifier::Jwks { keys, expect }
        }
        None => {
            let cfg = match kube {
                Some(k) => k.clone(),
                None => KubeConfig::in_cluster().map_err(|e| {
                    anyhow::anyhow!(
                        "--agent-auth {}: TokenReview needs the API server (--api-kube-auth or --api-kube-server), or give --agent-token-jwks: {e}",
                        a.agent_auth
                    )
                })?,
            };
            TokenVerifier::TokenReview(std::sync::Arc::new(
                credtrail_aggregator::auth::kube::KubeAuth::new(cfg)
                    .context("agent token review client")?,
            ))
        }
    };
    let t = std::sync::Arc::new(TokenIdentity {
        verifier,
        namespace: a.agent_namespace.clone(),
        service_account: a.agent_service_account.clone(),
    });
    Ok(if a.agent_auth == "token" {
        AgentAuth::Token(t)
    } else {
        AgentAuth::CertificateOrToken(t)
    })
}

fn run_api_token(a: ApiTokenArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let role = Role::parse(&a.role)
        .with_context(|| format!("--role {:?}: expected viewer, responder or admin", a.role))?;
    let token = tokens::generate().map_err(|_| anyhow::anyhow!("no randomness from the OS"))?;
    let line = tokens::line(&a.name, role, &token);
    let existing = std::fs::read_to_string(&a.append).unwrap_or_default();
    // Check the result parses (name syntax, duplicates) before writing.
    tokens::TokenFile::parse(
        &a.append.display().to_string(),
        &format!("{existing}\n{line}\n"),
    )?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&a.append)
        .with_context(|| format!("opening {}", a.append.display()))?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(f, "{sep}{line}").with_context(|| format!("writing {}", a.append.display()))?;
    println!("{token}");
    Ok(())
}

fn run_replay(a: ReplayArgs) -> anyhow::Result<()> {
    let policy = match &a.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    let out = replay(
        &ReplayInput {
            audit: a.audit,
            observations: a.observations,
            format: a.input_format,
            include_suppressed: a.include_suppressed,
        },
        policy,
    )?;
    for r in &out.rejected {
        eprintln!(
            "credtrail-aggregator: rejected in {}: {}",
            r.path.display(),
            r.error
        );
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for alert in &out.alerts {
        w.write_all(a.format.line(alert).as_bytes())?;
    }
    w.flush()?;
    for (reason, n) in &out.skipped {
        eprintln!("credtrail-aggregator: skipped {n} ({reason})");
    }
    eprintln!(
        "credtrail-aggregator: {} events ({} duplicates), {} observations, {} rejected, {} alerts ({} suppressed)",
        out.events,
        out.duplicates,
        out.observations,
        out.rejected.len(),
        out.alerts.len(),
        out.suppressed
    );
    Ok(())
}

fn run_eval(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let report = credtrail_aggregator::eval::run(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", credtrail_aggregator::eval::render(&report));
    }
    let wrong = report.wrong().count();
    if wrong > 0 {
        anyhow::bail!("{wrong} of {} scenarios wrong", report.scenarios.len());
    }
    Ok(())
}

fn run_backup(db: &std::path::Path, dest: &std::path::Path) -> anyhow::Result<()> {
    use credtrail_aggregator::store::backup;
    if dest.as_os_str() == "-" {
        let report = backup::to_writer(db, &mut std::io::stdout().lock())?;
        eprintln!("credtrail-aggregator: {report}");
    } else {
        let report = backup::to_file(db, dest)?;
        eprintln!("credtrail-aggregator: {report} -> {}", dest.display());
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CREDTRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Replay(a) => run_replay(a),
        Cmd::ApiToken(a) => run_api_token(a),
        Cmd::Alerts(a) => analyst::run(*a),
        Cmd::Eval { dir, json } => run_eval(&dir, json),
        Cmd::Backup { db, dest } => run_backup(&db, &dest),
        Cmd::CheckPolicy { policy } => Policy::load(&policy)
            .map(|p| {
                println!(
                    "{}: valid ({} trusted ranges, {} identity allowances, {} automation entries, {} roles, {} maintenance windows, {} suppressions)",
                    policy.display(),
                    p.trusted_ranges.len(),
                    p.identities.len(),
                    p.automation.len(),
                    p.roles.len(),
                    p.maintenance.len(),
                    p.suppressions.len()
                );
            })
            .map_err(Into::into),
        Cmd::Serve(a) => {
            let outputs = a.outputs.clone();
            serve_config(*a).and_then(|cfg| {
            let extras = ServeExtras {
                outputs: match &outputs {
                    Some(p) => credtrail_aggregator::deliver::config::load(p)?,
                    None => Vec::new(),
                },
            };
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let out = rt.block_on(serve_with(cfg, extras, shutdown_signal()));
            // A query still running on the blocking pool must not hold the exit.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            out
        })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credtrail-aggregator: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
