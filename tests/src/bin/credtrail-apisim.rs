//! `credtrail-apisim`: the API-server simulator as a command.
//!
//! - `serve`: HTTPS API server stand-in; audit events to a webhook and/or a file;
//! - `mint`: a service-account token from the same issuer key;
//! - `call`: one request, from a chosen source address, with a token (file or
//!   stdin) or a client certificate: what the demo's workloads run.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use credtrail_tests::apisim::{self, audit, https, rbac::Rbac, token};

#[derive(Parser)]
#[command(
    name = "credtrail-apisim",
    version,
    about = "A kube-apiserver stand-in that writes real audit.k8s.io/v1 events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulated API over HTTPS until interrupted.
    Serve(ServeArgs),
    /// Print a service-account token signed with the issuer key.
    Mint(MintArgs),
    /// Send one request and print the status and body.
    Call(CallArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// In-cluster endpoint.
    #[arg(long, default_value = "127.10.0.2:6443")]
    listen: SocketAddr,
    /// Public endpoint for clients outside the cluster.
    #[arg(long)]
    public_listen: Option<SocketAddr>,
    /// Serving certificate and key (PEM).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// CA of users' client certificates.
    #[arg(long)]
    client_ca: PathBuf,
    /// Issuer key file (hex); created with a random key if missing.
    #[arg(long)]
    issuer_key: PathBuf,
    /// Audit webhook URL, e.g. https://127.0.0.1:8443/audit.
    #[arg(long)]
    webhook_url: Option<String>,
    /// CA of the webhook's serving certificate.
    #[arg(long, requires = "webhook_url")]
    webhook_ca: Option<PathBuf>,
    /// Client certificate and key the API server presents to the webhook.
    #[arg(long, requires = "webhook_url")]
    webhook_cert: Option<PathBuf>,
    #[arg(long, requires = "webhook_url")]
    webhook_key: Option<PathBuf>,
    /// Longest wait for a batch to fill, in milliseconds (kube-apiserver: --audit-webhook-batch-max-wait).
    #[arg(long, default_value_t = 1000)]
    batch_wait_ms: u64,
    /// Events per batch at most (kube-apiserver: --audit-webhook-batch-max-size).
    #[arg(long, default_value_t = 400)]
    batch_max: usize,
    /// Also append events here as JSON lines (kube-apiserver: --audit-log-path).
    #[arg(long)]
    audit_log: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MintArgs {
    #[arg(long)]
    issuer_key: PathBuf,
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    service_account: String,
    /// Bind to a pod: `name:uid`.
    #[arg(long)]
    pod: Option<String>,
    /// Bind to a node: `name:uid`.
    #[arg(long)]
    node: Option<String>,
    #[arg(long, default_value_t = 3607)]
    lifetime_secs: i64,
}

#[derive(clap::Args)]
struct CallArgs {
    /// API server address.
    #[arg(long)]
    server: SocketAddr,
    /// Name to check in the server certificate (default: the address's IP).
    #[arg(long)]
    server_name: Option<String>,
    /// CA of the API server's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Local source address to bind before connecting.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Read the bearer token from this file (e.g. a projected token).
    #[arg(long, conflicts_with = "token_stdin")]
    token_file: Option<PathBuf>,
    /// Read the bearer token from standard input.
    #[arg(long)]
    token_stdin: bool,
    /// Like a container: enter a new mount namespace with this projected
    /// volume at /run/secrets/kubernetes.io/serviceaccount first (then
    /// `--token-file /var/run/secrets/kubernetes.io/serviceaccount/token`).
    #[arg(long)]
    sa_volume: Option<PathBuf>,
    /// Client certificate and key (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// X-Forwarded-For header value (a client-set claim).
    #[arg(long)]
    xff: Option<String>,
    #[arg(
        long,
        default_value = "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"
    )]
    user_agent: String,
    /// JSON body.
    #[arg(long)]
    data: Option<String>,
    /// Process name (comm) to take first, as the workload's own binary would have.
    #[arg(long)]
    comm: Option<String>,
    /// Stay alive this long after the answer (so a node agent can still
    /// read `/proc/<pid>` while it enriches the event).
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// HTTP method.
    method: String,
    /// Request path, e.g. /api/v1/namespaces/default/pods.
    path: String,
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

fn issuer(path: &PathBuf) -> anyhow::Result<token::Issuer> {
    if path.exists() {
        return token::Issuer::from_key_hex(&read(path)?).map_err(anyhow::Error::msg);
    }
    let i = token::Issuer::new();
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(i.key_hex().as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(i)
}

fn name_uid(s: &str) -> anyhow::Result<token::Ref> {
    let (name, uid) = s.split_once(':').context("expected name:uid")?;
    Ok(token::Ref {
        name: name.into(),
        uid: uid.into(),
    })
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let webhook = match &a.webhook_url {
        Some(url) => {
            let rest = url
                .strip_prefix("https://")
                .context("--webhook-url must be https://")?;
            let (hostport, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
            let addr: SocketAddr = hostport
                .parse()
                .context("--webhook-url host must be ip:port")?;
            let ca = read(a.webhook_ca.as_ref().context("--webhook-ca is required")?)?;
            let client = match (&a.webhook_cert, &a.webhook_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            let tls =
                https::client_config(&ca, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))?;
            Some(audit::WebhookConfig {
                path: format!("/{}", path.trim_start_matches('/')),
                target: https::Target {
                    addr,
                    server_name: addr.ip().to_string(),
                    tls,
                    bind: None,
                },
                batch_max: a.batch_max,
                batch_wait: Duration::from_millis(a.batch_wait_ms),
            })
        }
        None => None,
    };
    let sim = apisim::start(apisim::ApiSimConfig {
        listen: a.listen,
        public_listen: a.public_listen,
        cert_pem: read(&a.cert)?,
        key_pem: read(&a.key)?,
        client_ca_pem: read(&a.client_ca)?,
        issuer: issuer(&a.issuer_key)?,
        rbac: Rbac::default(),
        webhook,
        audit_log: a.audit_log,
    })
    .await?;
    eprintln!("credtrail-apisim listening on https://{}", sim.addr);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

async fn call(a: CallArgs) -> anyhow::Result<()> {
    let ca = read(&a.ca)?;
    let client = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    let tls = https::client_config(&ca, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))?;
    let token = if let Some(f) = &a.token_file {
        Some(read(f)?.trim().to_string())
    } else if a.token_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        Some(s.trim().to_string())
    } else {
        None
    };
    let mut headers = vec![
        ("user-agent", a.user_agent.clone()),
        ("accept", "application/json".to_string()),
    ];
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    if let Some(x) = &a.xff {
        headers.push(("x-forwarded-for", x.clone()));
    }
    let body = a.data.map(String::into_bytes);
    if body.is_some() {
        headers.push(("content-type", "application/json".to_string()));
    }
    let target = https::Target {
        addr: a.server,
        server_name: a.server_name.unwrap_or_else(|| a.server.ip().to_string()),
        tls,
        bind: a.bind,
    };
    let resp = https::request(
        &target,
        &a.method.to_ascii_uppercase(),
        &a.path,
        &headers,
        body,
    )
    .await?;
    println!("{}", resp.status);
    println!("{}", String::from_utf8_lossy(&resp.body));
    tokio::time::sleep(Duration::from_millis(a.linger_ms)).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Call(CallArgs {
        comm: Some(name), ..
    }) = &cli.command
    {
        let c = std::ffi::CString::new(name.as_str()).context("--comm has a NUL byte")?;
        // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 15 bytes).
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
    // Before any thread exists: unshare(CLONE_NEWNS) refuses multithreaded callers.
    if let Command::Call(CallArgs {
        sa_volume: Some(v), ..
    }) = &cli.command
    {
        credtrail_tests::fixtures::child::mount_service_account(v)
            .map_err(|e| anyhow::anyhow!("mounting the service-account volume: {e}"))?;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Serve(a) => rt.block_on(serve(a)),
        Command::Mint(a) => {
            let i = issuer(&a.issuer_key)?;
            let (t, _) = i.mint(&token::TokenSpec {
                namespace: a.namespace,
                service_account: a.service_account,
                pod: a.pod.as_deref().map(name_uid).transpose()?,
                node: a.node.as_deref().map(name_uid).transpose()?,
                lifetime_secs: a.lifetime_secs,
            });
            println!("{t}");
            Ok(())
        }
        Command::Call(a) => rt.block_on(call(a)),
    }
}
