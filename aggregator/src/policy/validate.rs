//! Validation of a [`PolicyFile`] into a [`Policy`], collecting every problem.

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;

use super::file::PolicyFile;
use super::{
    Automation, ConfiguredRole, IdentityAllowance, MaintenanceWindow, NamedRanges, Pattern, Policy,
    Suppression,
};

/// Longest duration a policy may give (windows, retention): 100 years.
const MAX_DURATION_DAYS: i64 = 36_525;
const MAX_DURATION: Duration = Duration::days(MAX_DURATION_DAYS);

/// Parses `30s`, `10m`, `24h`, `7d` (also `0`), at most 100 years.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::zero());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 30s, 10m, 24h, 7d)"))?;
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => {
            return Err(format!(
                "{s:?} is not a duration (use e.g. 30s, 10m, 24h, 7d)"
            ));
        }
    };
    // Bounded so that no window added to a plausible time leaves chrono's range.
    d.filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| format!("{s:?} is longer than the maximum of {MAX_DURATION_DAYS} days"))
}

struct Collector {
    problems: Vec<String>,
}

impl Collector {
    fn cidrs(&mut self, at: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match parse_cidr(s) {
                Some(n) => out.push(n),
                None => self
                    .problems
                    .push(format!("{at}[{i}]: {s:?} is not a CIDR or IP address")),
            }
        }
        out
    }

    fn time(&mut self, at: &str, s: &str) -> Option<DateTime<Utc>> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.problems
                    .push(format!("{at}: {s:?} is not an RFC 3339 time: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, at: &str, s: Option<&str>, default: Duration) -> Duration {
        match s.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problems.push(format!("{at}: {e}"));
                default
            }
        }
    }

    fn nonempty(&mut self, at: &str, s: &str) {
        if s.trim().is_empty() {
            self.problems.push(format!("{at}: must not be empty"));
        }
    }
}

/// A CIDR, or a bare IP (taken as /32 or /128).
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Validates `file`; `now` is the default `created` of suppressions.
pub fn validate(file: PolicyFile, now: DateTime<Utc>) -> Result<Policy, Vec<String>> {
    let mut c = Collector {
        problems: Vec::new(),
    };
    let node_cidrs = c.cidrs("cluster.node_cidrs", &file.cluster.node_cidrs);
    let pod_cidrs = c.cidrs("cluster.pod_cidrs", &file.cluster.pod_cidrs);
    let service_cidrs = c.cidrs("cluster.service_cidrs", &file.cluster.service_cidrs);
    for (i, a) in file.cluster.api_servers.iter().enumerate() {
        if a.rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            c.problems
                .push(format!("cluster.api_servers[{i}]: {a:?} must be host:port"));
        }
    }
    let trusted_ranges = file
        .trusted_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            c.nonempty(&format!("trusted_ranges[{i}].name"), &r.name);
            NamedRanges {
                name: r.name.clone(),
                cidrs: c.cidrs(&format!("trusted_ranges[{i}].cidrs"), &r.cidrs),
            }
        })
        .collect();
    let identities = file
        .identities
        .iter()
        .enumerate()
        .map(|(i, a)| {
            c.nonempty(&format!("identities[{i}].username"), &a.username);
            if a.cidrs.is_empty() && a.nodes.is_empty() {
                c.problems.push(format!(
                    "identities[{i}]: give cidrs or nodes (an allowance allowing nothing is a mistake)"
                ));
            }
            IdentityAllowance {
                username: Pattern(a.username.clone()),
                cidrs: c.cidrs(&format!("identities[{i}].cidrs"), &a.cidrs),
                nodes: a.nodes.clone(),
            }
        })
        .collect();
    let automation = file
        .automation
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let at = format!("automation[{i}]");
            c.nonempty(&format!("{at}.name"), &a.name);
            c.nonempty(&format!("{at}.username"), &a.username);
            if a.username.trim() == "*" {
                c.problems
                    .push(format!("{at}.username: \"*\" would approve every identity"));
            }
            if a.credential_ids.is_empty() {
                c.problems.push(format!(
                    "{at}.credential_ids: required (identity, credential and range must all match)"
                ));
            }
            if a.cidrs.is_empty() {
                c.problems.push(format!(
                    "{at}.cidrs: required (identity, credential and range must all match)"
                ));
            }
            Automation {
                name: a.name.clone(),
                username: Pattern(a.username.clone()),
                credential_ids: a.credential_ids.clone(),
                cidrs: c.cidrs(&format!("{at}.cidrs"), &a.cidrs),
            }
        })
        .collect();
    let roles = file
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("roles[{i}]");
            match (r.kind.as_str(), &r.namespace) {
                ("ClusterRole", None) => {}
                ("ClusterRole", Some(_)) => c
                    .problems
                    .push(format!("{at}.namespace: a ClusterRole has no namespace")),
                ("Role", Some(_)) => {}
                ("Role", None) => c
                    .problems
                    .push(format!("{at}.namespace: a Role needs its namespace")),
                (k, _) => c
                    .problems
                    .push(format!("{at}.kind: {k:?} is neither ClusterRole nor Role")),
            }
            c.nonempty(&format!("{at}.name"), &r.name);
            ConfiguredRole {
                kind: r.kind.clone(),
                namespace: r.namespace.clone().unwrap_or_default(),
                name: r.name.clone(),
                rules: r.rules.clone(),
            }
        })
        .collect();
    let d = &file.detection;
    let learning_window = c.duration(
        "detection.learning_window",
        d.learning_window.as_deref(),
        Duration::zero(),
    );
    let join_window = c.duration(
        "detection.join_window",
        d.join_window.as_deref(),
        Duration::seconds(30),
    );
    let jti_reuse_window = c.duration(
        "detection.jti_reuse_window",
        d.jti_reuse_window.as_deref(),
        Duration::minutes(10),
    );
    let max_suppression = c.duration(
        "detection.max_suppression",
        d.max_suppression.as_deref(),
        Duration::days(30),
    );
    let learned_ttl = c.duration(
        "detection.learned_ttl",
        d.learned_ttl.as_deref(),
        Duration::hours(24),
    );
    let node_grace = c.duration(
        "detection.node_grace",
        d.node_grace.as_deref(),
        Duration::hours(6),
    );
    let max_token_lifetime = c.duration(
        "detection.max_token_lifetime",
        d.max_token_lifetime.as_deref(),
        Duration::hours(24),
    );
    let maintenance = file
        .maintenance_windows
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let at = format!("maintenance_windows[{i}]");
            c.nonempty(&format!("{at}.name"), &m.name);
            let start = c.time(&format!("{at}.start"), &m.start);
            let end = c.time(&format!("{at}.end"), &m.end);
            let (start, end) = (start?, end?);
            if end <= start {
                c.problems.push(format!("{at}: end must be after start"));
            }
            Some(MaintenanceWindow {
                name: m.name.clone(),
                start,
                end,
                nodes: m.nodes.clone(),
                identities: m.identities.iter().cloned().map(Pattern).collect(),
                rules: m.rules.clone(),
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let suppressions = file
        .suppressions
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let at = format!("suppressions[{i}]");
            c.nonempty(&format!("{at}.id"), &s.id);
            c.nonempty(&format!("{at}.owner"), &s.owner);
            c.nonempty(&format!("{at}.reason"), &s.reason);
            if !ids.insert(s.id.clone()) {
                c.problems
                    .push(format!("{at}.id: {:?} is used twice", s.id));
            }
            if s.matcher == Default::default() {
                c.problems
                    .push(format!("{at}.match: give at least one field to match"));
            }
            let source_cidr = s.matcher.source_cidr.as_deref().and_then(|v| {
                let n = parse_cidr(v);
                if n.is_none() {
                    c.problems.push(format!(
                        "{at}.match.source_cidr: {v:?} is not a CIDR or IP address"
                    ));
                }
                n
            });
            let created = match &s.created {
                Some(t) => c.time(&format!("{at}.created"), t)?,
                None => now,
            };
            let expires = c.time(&format!("{at}.expires"), &s.expires)?;
            if expires <= created {
                c.problems
                    .push(format!("{at}.expires: must be after created"));
            }
            Some(Suppression {
                id: s.id.clone(),
                owner: s.owner.clone(),
                reason: s.reason.clone(),
                created,
                expires,
                matcher: s.matcher.clone(),
                source_cidr,
            })
        })
        .collect();
    let state = state_limits(&mut c, &d.state);
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Policy {
        node_cidrs,
        pod_cidrs,
        service_cidrs,
        api_servers: file.cluster.api_servers,
        trusted_ranges,
        identities,
        automation,
        high_privilege_roles: file.high_privilege_roles,
        roles,
        learning_window,
        join_window,
        jti_reuse_window,
        max_suppression,
        alert_outside_without_expectation: d.alert_outside_without_expectation.unwrap_or(true),
        learned_ttl,
        node_grace,
        max_token_lifetime,
        maintenance,
        suppressions,
        state,
    })
}

fn state_limits(c: &mut Collector, s: &crate::policy::StateSpec) -> crate::policy::StateLimits {
    use crate::policy::budget;
    let budget_mib = match s.memory_budget_mib {
        None => budget::DEFAULT_BUDGET_MIB,
        Some(b) if (budget::MIN_BUDGET_MIB..=budget::MAX_BUDGET_MIB).contains(&b) => b,
        Some(b) => {
            c.problems.push(format!(
                "detection.state.memory_budget_mib: {b} is outside {}..={}",
                budget::MIN_BUDGET_MIB,
                budget::MAX_BUDGET_MIB
            ));
            budget::DEFAULT_BUDGET_MIB
        }
    };
    let d = crate::policy::StateLimits::from_budget(budget_mib);
    let mut count = |at: &str, v: Option<usize>, default: usize| match v {
        Some(0) => {
            c.problems
                .push(format!("detection.state.{at}: must be at least 1"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let lim = crate::policy::StateLimits {
        memory_budget_mib: budget_mib,
        max_identities: count("max_identities", s.max_identities, d.max_identities),
        max_credentials: count("max_credentials", s.max_credentials, d.max_credentials),
        max_nodes: count("max_nodes", s.max_nodes, d.max_nodes),
        max_pods: count("max_pods", s.max_pods, d.max_pods),
        max_rbac_objects: count("max_rbac_objects", s.max_rbac_objects, d.max_rbac_objects),
        max_age: d.max_age,
    };
    let max_age = c.duration("detection.state.max_age", s.max_age.as_deref(), d.max_age);
    if max_age <= Duration::zero() {
        c.problems
            .push("detection.state.max_age: must be longer than 0".to_owned());
    }
    let lim = crate::policy::StateLimits { max_age, ..lim };
    over_budget(c, s, &lim);
    lim
}

/// Refuses caps that together need more memory than the budget, naming the
/// caps the policy set (largest first) and what each takes.
fn over_budget(c: &mut Collector, s: &crate::policy::StateSpec, lim: &crate::policy::StateLimits) {
    use crate::policy::budget;
    let need = budget::estimate_mib(lim);
    if need <= lim.memory_budget_mib as u128 {
        return;
    }
    let set = [
        s.max_credentials,
        s.max_identities,
        s.max_pods,
        s.max_nodes,
        s.max_rbac_objects,
    ];
    let mut named: Vec<(u128, String)> = budget::families(lim)
        .iter()
        .zip(set)
        .filter(|(_, v)| v.is_some())
        .map(|((f, cap), _)| {
            let mib = f.bytes_at(*cap).div_ceil(1 << 20);
            (
                mib,
                format!(
                    "detection.state.{} = {cap} (~{mib} MiB at {} B each)",
                    f.field, f.bytes
                ),
            )
        })
        .collect();
    named.sort_by_key(|n| std::cmp::Reverse(n.0));
    let names: Vec<String> = named.into_iter().map(|(_, n)| n).collect();
    c.problems.push(format!(
        "detection.state: the caps need ~{need} MiB of memory, more than detection.state.memory_budget_mib ({} MiB): lower {} or raise memory_budget_mib",
        lim.memory_budget_mib,
        if names.is_empty() {
            "the caps".to_owned()
        } else {
            names.join(", ")
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_cidrs() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::seconds(30));
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("0").unwrap(), Duration::zero());
        assert!(parse_duration("1w").unwrap_err().contains("not a duration"));
        assert!(parse_duration("h").is_err());
        // These panicked in Duration::days/seconds (found auditing time arithmetic for issue 8).
        assert!(parse_duration("9999999999999999d").is_err());
        assert!(parse_duration("9223372036854775807s").is_err());
        assert!(parse_duration("36526d").unwrap_err().contains("maximum"));
        assert_eq!(parse_duration("36525d").unwrap(), MAX_DURATION);
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_cidr("10.0.0/8").is_none());
    }

    #[test]
    fn state_limits_default_and_refuse_zero() {
        let p = validate(PolicyFile::default(), Utc::now()).unwrap();
        assert_eq!(p.state, crate::policy::StateLimits::default());
        let mut f = PolicyFile::default();
        f.detection.state.max_identities = Some(0);
        f.detection.state.max_age = Some("0s".into());
        let problems = validate(f, Utc::now()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("detection.state.max_identities"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("detection.state.max_age"))
        );
        let mut f = PolicyFile::default();
        f.detection.state.max_credentials = Some(7);
        f.detection.state.max_age = Some("2h".into());
        let p = validate(f, Utc::now()).unwrap();
        assert_eq!(p.state.max_credentials, 7);
        assert_eq!(p.state.max_age, Duration::hours(2));
    }

    #[test]
    fn caps_over_the_memory_budget_are_refused_naming_the_field() {
        use crate::policy::budget;
        // The caps of earlier versions (500,000 credentials and pods) need
        // more than the default budget: refused, the largest cap named first.
        let mut f = PolicyFile::default();
        f.detection.state.max_credentials = Some(500_000);
        f.detection.state.max_pods = Some(500_000);
        let problems = validate(f.clone(), Utc::now()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert!(
            p.contains("detection.state.max_credentials = 500000")
                && p.contains("memory_budget_mib (448 MiB)")
                && p.find("max_credentials") < p.find("max_pods"),
            "{p}"
        );
        // Raising the budget accepts them; the caps not set grow with it.
        // (Each cap not set takes its share of the whole budget.)
        f.detection.state.memory_budget_mib = Some(4096);
        let p = validate(f, Utc::now()).unwrap();
        assert_eq!(p.state.max_credentials, 500_000);
        assert_eq!(p.state.max_identities, budget::IDENTITIES.default_cap(4096));
        assert!(p.state.max_identities > crate::policy::StateLimits::default().max_identities);
        assert!(budget::estimate_mib(&p.state) <= 4096);
        // One cap alone can break the budget too.
        let mut f = PolicyFile::default();
        f.detection.state.max_rbac_objects = Some(10_000_000);
        let problems = validate(f, Utc::now()).unwrap_err();
        assert!(
            problems[0].contains("detection.state.max_rbac_objects = 10000000"),
            "{problems:?}"
        );
        // A budget outside its range is refused (a typo must not lift every bound).
        for b in [
            0,
            budget::MIN_BUDGET_MIB - 1,
            budget::MAX_BUDGET_MIB + 1,
            usize::MAX,
        ] {
            let mut f = PolicyFile::default();
            f.detection.state.memory_budget_mib = Some(b);
            let problems = validate(f, Utc::now()).unwrap_err();
            assert!(
                problems[0].contains("detection.state.memory_budget_mib"),
                "{b}: {problems:?}"
            );
        }
        // A smaller budget gives smaller caps, all within it.
        let mut f = PolicyFile::default();
        f.detection.state.memory_budget_mib = Some(budget::MIN_BUDGET_MIB);
        let p = validate(f, Utc::now()).unwrap();
        assert!(budget::estimate_mib(&p.state) <= budget::MIN_BUDGET_MIB as u128);
        assert!(p.state.max_credentials < crate::policy::StateLimits::default().max_credentials);
    }

    #[test]
    fn patterns_are_exact_or_prefix() {
        let p = super::super::Pattern("system:serviceaccount:ci:*".into());
        assert!(p.matches("system:serviceaccount:ci:deployer"));
        assert!(!p.matches("system:serviceaccount:cix:deployer"));
        let e = super::super::Pattern("alice".into());
        assert!(e.matches("alice") && !e.matches("alice2"));
    }
}
