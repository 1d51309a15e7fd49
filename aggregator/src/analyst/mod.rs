//! `credtrail-aggregator alerts …`: the analyst CLI over the HTTP query API
//! (docs/API.md): list, show and triage alerts (ack, close, assign, note),
//! as a table or JSON. The token comes from `--token-file` or
//! `CREDTRAIL_API_TOKEN`, never from the command line (which `ps` shows).

mod client;
mod table;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Value, json};

use client::Client;

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// The aggregator's HTTP API (`--api-listen`), `http://` or `https://`.
    #[arg(
        long,
        env = "CREDTRAIL_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// File holding the API token (else `CREDTRAIL_API_TOKEN`).
    #[arg(long, env = "CREDTRAIL_API_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) of the API's TLS certificate, for an https:// URL.
    #[arg(long, env = "CREDTRAIL_API_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// `table` for people, `json` for scripts (the API's answer as is).
    #[arg(long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    cmd: AlertsCmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum AlertsCmd {
    /// Alerts, newest first, filtered.
    List(ListArgs),
    /// One alert with its triage history.
    Show { id: String },
    /// Acknowledge an alert (optionally assign it and add a note).
    Ack {
        id: String,
        #[arg(long)]
        assign: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Close an alert as a true positive, a false positive or benign.
    Close {
        id: String,
        /// How it was resolved.
        #[arg(long = "as", value_enum)]
        resolution: Resolution,
        #[arg(long)]
        note: Option<String>,
        /// For a false positive: also create the suggested suppression
        /// ("suppress alerts like this"; the API's guards apply).
        #[arg(long)]
        suppress: bool,
    },
    /// Assign an alert to someone (or `--unassign`).
    Assign {
        id: String,
        /// The assignee.
        #[arg(required_unless_present = "unassign", conflicts_with = "unassign")]
        name: Option<String>,
        #[arg(long)]
        unassign: bool,
    },
    /// Add a note to an alert's history.
    Note { id: String, text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Resolution {
    TruePositive,
    FalsePositive,
    Benign,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// open, acknowledged, closed (any), closed_true_positive, closed_false_positive, closed_benign.
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    assignee: Option<String>,
    #[arg(long)]
    rule: Option<String>,
    #[arg(long)]
    analytic: Option<String>,
    /// info, low, medium, high, critical: this or higher.
    #[arg(long)]
    min_severity: Option<String>,
    #[arg(long)]
    identity: Option<String>,
    #[arg(long)]
    node: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    since: Option<String>,
    /// Also suppressed alerts.
    #[arg(long)]
    include_suppressed: bool,
    /// Alerts per page (1..=1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// From a previous page's `(more: …)`.
    #[arg(long)]
    page_token: Option<String>,
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token(args: &AlertsArgs) -> anyhow::Result<String> {
    let t = match &args.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?,
        None => std::env::var("CREDTRAIL_API_TOKEN")
            .context("no API token: give --token-file FILE or set CREDTRAIL_API_TOKEN")?,
    };
    let t = t.trim().to_owned();
    if t.is_empty() || t.contains(char::is_whitespace) {
        bail!("the API token is empty or has spaces inside");
    }
    Ok(t)
}

/// Fails with the API's own message on a non-2xx answer.
fn check(what: &str, (status, v): (u16, Value)) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let msg = v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), table::safe);
    bail!("{what}: HTTP {status}: {msg}")
}

/// Runs `alerts …`.
pub fn run(args: AlertsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.url, token(&args)?, args.ca_file.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let out = rt.block_on(exec(&client, &args.cmd))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&out.value)?),
        Output::Table => print!("{}", out.table),
    }
    Ok(())
}

struct Shown {
    value: Value,
    table: String,
}

async fn triage(client: &Client, id: &str, body: Value) -> anyhow::Result<Value> {
    let path = format!("/api/v1/alerts/{}/triage", enc(id));
    check(
        "triage",
        client.call(Method::POST, &path, Some(&body)).await?,
    )
}

async fn exec(client: &Client, cmd: &AlertsCmd) -> anyhow::Result<Shown> {
    let triaged = |v: Value| Shown {
        table: format!("{}\n{}", table::text(&v["id"]), table::triage(&v["triage"])),
        value: v,
    };
    Ok(match cmd {
        AlertsCmd::List(l) => {
            let mut q = vec![format!("page_size={}", l.limit)];
            for (k, v) in [
                ("status", &l.status),
                ("assignee", &l.assignee),
                ("rule", &l.rule),
                ("analytic", &l.analytic),
                ("min_severity", &l.min_severity),
                ("identity", &l.identity),
                ("node", &l.node),
                ("namespace", &l.namespace),
                ("since", &l.since),
                ("page_token", &l.page_token),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(v)));
                }
            }
            if l.include_suppressed {
                q.push("include_suppressed=true".into());
            }
            let v = check(
                "list",
                client
                    .call(
                        Method::GET,
                        &format!("/api/v1/alerts?{}", q.join("&")),
                        None,
                    )
                    .await?,
            )?;
            Shown {
                table: table::alerts(&v),
                value: v,
            }
        }
        AlertsCmd::Show { id } => {
            let v = check(
                "show",
                client
                    .call(Method::GET, &format!("/api/v1/alerts/{}", enc(id)), None)
                    .await?,
            )?;
            Shown {
                table: table::alert(&v),
                value: v,
            }
        }
        AlertsCmd::Ack { id, assign, note } => {
            let mut b = json!({"status": "acknowledged"});
            if let Some(a) = assign {
                b["assignee"] = a.as_str().into();
            }
            if let Some(n) = note {
                b["note"] = n.as_str().into();
            }
            triaged(triage(client, id, b).await?)
        }
        AlertsCmd::Close {
            id,
            resolution,
            note,
            suppress,
        } => {
            let status = match resolution {
                Resolution::TruePositive => "closed_true_positive",
                Resolution::FalsePositive => "closed_false_positive",
                Resolution::Benign => "closed_benign",
            };
            if *suppress && *resolution != Resolution::FalsePositive {
                bail!("--suppress applies to --as false-positive only");
            }
            let mut b = json!({ "status": status });
            if let Some(n) = note {
                b["note"] = n.as_str().into();
            }
            let mut v = triage(client, id, b).await?;
            let mut extra = String::new();
            if *suppress {
                let Some(s) = v.get("suggested_suppression").cloned() else {
                    bail!(
                        "closed, but no suppression was suggested: {}",
                        table::text(&v["suggestion_unavailable"])
                    );
                };
                let created = check(
                    "suppress",
                    client
                        .call(Method::POST, "/api/v1/suppressions", Some(&s))
                        .await?,
                )?;
                extra = format!(
                    "suppression {} created (expires {})\n",
                    table::text(&created["id"]),
                    table::text(&created["expires"])
                );
                v["created_suppression"] = created;
            } else if let Some(s) = v.get("suggested_suppression") {
                extra = format!(
                    "suggested suppression (add --suppress to create it): {}\n",
                    table::safe(&s["match"].to_string())
                );
            }
            let mut shown = triaged(v);
            shown.table.push_str(&extra);
            shown
        }
        AlertsCmd::Assign { id, name, unassign } => {
            let assignee = if *unassign {
                Value::Null
            } else {
                name.clone().map(Value::String).unwrap_or(Value::Null)
            };
            triaged(triage(client, id, json!({ "assignee": assignee })).await?)
        }
        AlertsCmd::Note { id, text } => triaged(triage(client, id, json!({ "note": text })).await?),
    })
}
