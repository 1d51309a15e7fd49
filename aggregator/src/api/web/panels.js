// The side panel: coverage (agents, audit streams, binding audit level),
// active suppressions, and what detection learned.

async function loadSuppressions() {
  const ul = $("#suppressions");
  try {
    const body = await getJSON("/api/v1/suppressions");
    ul.replaceChildren();
    for (const s of body.suppressions) {
      const li = el("li");
      li.append(el("span", "mono", s.id));
      li.append(el("div", "muted small", JSON.stringify(s.match)));
      li.append(el("div", "small", s.owner + ": " + s.reason));
      li.append(el("div", "muted small",
        s.hits + " alert(s) silenced · until " + s.expires + " · created by " + (s.created_by || s.origin)));
      ul.append(li);
    }
    if (!body.suppressions.length) ul.append(el("li", "muted", "none active"));
  } catch (e) {
    ul.replaceChildren(el("li", "muted", "unavailable: " + e.message));
  }
}

function age(s) {
  if (s === null || s === undefined) return "never";
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function dotItem(ok, label, note) {
  const li = el("li");
  li.append(el("span", "dot " + (ok === null ? "unknown" : ok ? "ok" : "bad")));
  li.append(el("span", "mono", label));
  if (note) li.append(el("span", "muted", " " + note));
  return li;
}

async function loadCoverage() {
  try {
    const c = await getJSON("/api/v1/coverage");
    $("#coverage-time").textContent = "as of " + c.generated_at.replace("T", " ").replace(/\.\d+Z$/, "Z") +
      " (alive = contact within " + c.freshness_seconds + " s)";
    const nodes = $("#cov-nodes");
    nodes.replaceChildren();
    for (const n of c.nodes) {
      nodes.append(dotItem(n.alive, n.node,
        (n.connected ? "connected, " : "disconnected, ") + age(n.last_contact_age_seconds)));
      // What this node's hooks cannot see (system-call fallbacks), as its agent said.
      for (const b of n.blind_spots || []) nodes.append(dotItem(null, n.node + " cannot see", b));
    }
    if (!c.nodes.length) nodes.append(dotItem(null, "no agent has reported"));
    // Claims the agent stream refused (another node, outside the policy's ranges).
    for (const r of c.agent_refusals || []) {
      nodes.append(dotItem(false, r.node, r.count + " claims refused (" + r.reason + "): " + r.last_message));
    }
    const audit = $("#cov-audit");
    audit.replaceChildren();
    for (const s of c.audit_sources) {
      audit.append(dotItem(s.alive, s.source,
        s.events + " events, last " + age(s.last_received_age_seconds) +
        (s.rejected ? ", " + s.rejected + " rejected" : "")));
    }
    if (!c.audit_sources.length) audit.append(dotItem(null, "no audit events received"));
    const b = $("#cov-bindings");
    b.replaceChildren();
    const st = c.bindings.status;
    b.append(el("span", "dot " + (st === "sufficient" ? "ok" : st === "unknown" ? "unknown" : "bad")));
    b.append(el("strong", null, st.replace(/_/g, " ")));
    b.append(el("div", "muted small", c.bindings.explanation));
  } catch (e) {
    $("#coverage-time").textContent = "coverage unavailable: " + e.message;
  }
}

// What detection learned: baselines (each can be dropped after review),
// nodes learned from the audit stream, and minted tokens (lineage).
async function loadLearned() {
  try {
    const b = await getJSON("/api/v1/baselines");
    const ul = $("#learned-baselines");
    ul.replaceChildren();
    for (const r of b.baselines.filter((x) => x.learned).slice(0, 50)) {
      const li = el("li", null, r.username + " \u2190 " + r.source_ip + " ");
      li.append(el("span", "muted small", "(" + (r.taught_by_audit_id || "?") + ") "));
      const drop = el("button", "small", "drop");
      drop.type = "button";
      drop.addEventListener("click", async () => {
        const q = new URLSearchParams({ username: r.username, source_ip: r.source_ip });
        const resp = await fetch("/api/v1/baselines?" + q.toString(),
          { method: "DELETE", headers: authHeaders(), credentials: "omit" });
        if (resp.status === 401) askToken("The API needs a token.");
        else if (!resp.ok) banner("drop refused: " + resp.status + " " + resp.statusText);
        loadLearned();
      });
      li.append(drop);
      ul.append(li);
    }
    if (!ul.children.length) ul.append(el("li", "muted", "nothing learned"));
    const n = await getJSON("/api/v1/learned/nodes");
    const nl = $("#learned-nodes");
    nl.replaceChildren();
    for (const x of n.learned_nodes.slice(0, 50)) {
      const addrs = ((x.facts && x.facts.addresses) || []).map((a) => a[0] + " (" + a[1].source + ")");
      nl.append(el("li", null, x.node + (x.released ? " released" : ": " + addrs.join(", "))));
    }
    if (!nl.children.length) nl.append(el("li", "muted", "none"));
    const m = await getJSON("/api/v1/tokens/lineage");
    const ml = $("#minted-tokens");
    ml.replaceChildren();
    for (const x of m.lineage.slice(0, 50)) {
      ml.append(el("li", null, x.jti + " for " + x.service_account + " by " + x.minter +
        " from " + (x.source_ip || "?") + (x.expiration_seconds ? ", " + x.expiration_seconds + " s" : "")));
    }
    if (!ml.children.length) ml.append(el("li", "muted", "none"));
  } catch (e) {
    $("#learned-baselines").replaceChildren(el("li", "muted", "unavailable: " + e.message));
  }
}

