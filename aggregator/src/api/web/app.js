// credtrail web page: reads the public /api/v1 endpoints only.
// Every value from the API is written with textContent, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
let nextToken = null;
let live = null;
const shown = new Set();

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// Current filter as URLSearchParams (only the fields that are set).
function filterParams() {
  const p = new URLSearchParams();
  const form = new FormData($("#filters"));
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    if (k === "since") {
      p.set(k, new Date(v + "Z").toISOString());
    } else {
      p.set(k, v);
    }
  }
  return p;
}

function requestText(r) {
  let what = r.resource || "";
  if (r.subresource) what += "/" + r.subresource;
  const where = [r.namespace, r.name].filter(Boolean).join("/");
  return [r.verb, what, where, r.decision === "deny" ? "(denied)" : ""].filter(Boolean).join(" ");
}

function row(a, fresh) {
  const tr = el("tr", (fresh ? "fresh " : "") + (a.suppressed_by ? "suppressed" : ""));
  tr.dataset.id = a.id;
  tr.append(el("td", "mono nowrap", a.time.replace("T", " ").replace(/\.\d+Z$/, "Z")));
  const sev = el("td", "nowrap");
  sev.append(el("span", "sev " + a.severity, a.severity));
  tr.append(sev);
  const rule = el("td", "mono nowrap", a.rule);
  rule.append(el("div", "class", a.analytic));
  tr.append(rule);
  tr.append(el("td", "mono ident", a.identity.username));
  const src = el("td", "nowrap");
  src.append(el("span", "mono", a.source_ip || "—"));
  src.append(el("div", "class", a.source_class.replace(/_/g, " ")));
  tr.append(src);
  tr.append(el("td", "mono", requestText(a.request)));
  const why = el("td", "why", a.reason);
  if (a.suppressed_by) why.append(el("div", "class", "suppressed by " + a.suppressed_by));
  tr.append(why);
  tr.addEventListener("click", () => showDetail(a.id));
  return tr;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function banner(text) {
  const b = $("#banner");
  b.textContent = text;
  b.hidden = !text;
}

async function loadAlerts(append) {
  const p = filterParams();
  p.set("page_size", "50");
  if (append && nextToken) p.set("page_token", nextToken);
  try {
    const body = await getJSON("/api/v1/alerts?" + p.toString());
    const tbody = $("#alerts tbody");
    if (!append) { tbody.replaceChildren(); shown.clear(); }
    for (const a of body.alerts) {
      if (shown.has(a.id)) continue;
      shown.add(a.id);
      tbody.append(row(a, false));
    }
    nextToken = body.next_page_token || null;
    $("#more").hidden = !nextToken;
    $("#empty").hidden = tbody.children.length > 0;
    banner("");
  } catch (e) {
    banner("Could not load alerts: " + e.message);
  }
}

async function showDetail(id) {
  const d = $("#detail");
  try {
    const a = await getJSON("/api/v1/alerts/" + encodeURIComponent(id));
    d.textContent = JSON.stringify(a, null, 2);
  } catch (e) {
    d.textContent = "Could not load alert " + id + ": " + e.message;
  }
  d.hidden = false;
}

function startLive() {
  if (live) live.close();
  const p = filterParams();
  p.delete("include_suppressed");
  live = new EventSource("/api/v1/alerts/stream?" + p.toString());
  const state = $("#live");
  live.onopen = () => { state.textContent = "live"; state.className = "live on"; };
  live.onerror = () => { state.textContent = "live: reconnecting"; state.className = "live off"; };
  live.addEventListener("alert", (ev) => {
    const a = JSON.parse(ev.data);
    if (shown.has(a.id)) return;
    shown.add(a.id);
    $("#alerts tbody").prepend(row(a, true));
    $("#empty").hidden = true;
  });
  live.addEventListener("skipped", (ev) => {
    const n = JSON.parse(ev.data).count;
    banner(n + " live alert(s) were skipped because this page fell behind; reload to see them.");
  });
}

function exportLinks() {
  const p = filterParams();
  for (const fmt of ["jsonl", "cef"]) {
    const q = new URLSearchParams(p);
    q.set("format", fmt);
    $("#export-" + fmt).href = "/api/v1/export/alerts?" + q.toString();
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
      drop.addEventListener("click", async () => {
        const q = new URLSearchParams({ username: r.username, source_ip: r.source_ip });
        await fetch("/api/v1/baselines?" + q.toString(), { method: "DELETE" });
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

function apply(ev) {
  if (ev) ev.preventDefault();
  nextToken = null;
  exportLinks();
  loadAlerts(false);
  startLive();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#filters").addEventListener("submit", apply);
  $("#more").addEventListener("click", () => loadAlerts(true));
  apply(null);
  loadCoverage();
  setInterval(loadCoverage, 15000);
  loadLearned();
  setInterval(loadLearned, 30000);
});
