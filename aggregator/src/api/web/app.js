// credtrail web page: reads the public /api/v1 endpoints only.
// Every value from the API is written with textContent, never as HTML.
// The API token is kept in sessionStorage (this tab only), sent as
// `Authorization: Bearer`, never in a cookie or a URL the server sees
// (`#token=` in the address is read once, stored, and removed).
"use strict";

const $ = (sel) => document.querySelector(sel);
let nextToken = null;
let live = null;
const shown = new Set();
const TOKEN_KEY = "credtrail.token";

function apiToken() {
  const m = /^#token=([A-Za-z0-9._~+\/=-]+)$/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = apiToken();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

// Ask for a token (after a 401, or when none is stored).
function askToken(why) {
  const f = $("#login");
  $("#login-why").textContent = why || "";
  f.hidden = false;
}

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
  const r = await fetch(url, { headers: authHeaders(), credentials: "omit" });
  const body = await r.json();
  if (r.status === 401) askToken("The API needs a token (" + (body.error || "401") + ").");
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

function onLiveEvent(type, data) {
  if (type === "alert") {
    const a = JSON.parse(data);
    if (shown.has(a.id)) return;
    shown.add(a.id);
    $("#alerts tbody").prepend(row(a, true));
    $("#empty").hidden = true;
  } else if (type === "skipped") {
    const n = JSON.parse(data).count;
    banner(n + " live alert(s) were skipped because this page fell behind; reload to see them.");
  }
}

// The live stream (text/event-stream) read with fetch, so the token goes in
// the Authorization header (EventSource cannot send one).
async function readLive(url, ctl) {
  const state = $("#live");
  const r = await fetch(url, { headers: authHeaders({ Accept: "text/event-stream" }), credentials: "omit", signal: ctl.signal });
  if (r.status === 401) { askToken("The API needs a token."); throw new Error("401"); }
  if (!r.ok) throw new Error(r.statusText);
  state.textContent = "live"; state.className = "live on";
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let type = "message", data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onLiveEvent(type, data.join("\n"));
    }
  }
}

function startLive() {
  if (live) live.abort();
  const ctl = new AbortController();
  live = ctl;
  const p = filterParams();
  p.delete("include_suppressed");
  const url = "/api/v1/alerts/stream?" + p.toString();
  const state = $("#live");
  const loop = async () => {
    while (live === ctl) {
      try { await readLive(url, ctl); } catch (e) { if (live !== ctl) return; }
      state.textContent = "live: reconnecting"; state.className = "live off";
      await new Promise((res) => setTimeout(res, 3000));
    }
  };
  loop();
}

function exportQuery(fmt) {
  const q = new URLSearchParams(filterParams());
  q.set("format", fmt);
  return "/api/v1/export/alerts?" + q.toString();
}

// Exports are fetched with the token and saved from memory.
async function download(fmt) {
  try {
    const r = await fetch(exportQuery(fmt), { headers: authHeaders({ Accept: "*/*" }), credentials: "omit" });
    if (r.status === 401) askToken("The API needs a token.");
    if (!r.ok) throw new Error(r.statusText);
    const url = URL.createObjectURL(await r.blob());
    const a = el("a");
    a.href = url;
    a.download = "credtrail-alerts." + fmt;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    banner("Export failed: " + e.message);
  }
}

function exportLinks() {}

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
      drop.addEventListener("click", async () => {
        const q = new URLSearchParams({ username: r.username, source_ip: r.source_ip });
        const r = await fetch("/api/v1/baselines?" + q.toString(),
          { method: "DELETE", headers: authHeaders(), credentials: "omit" });
        if (r.status === 401) askToken("The API needs a token.");
        else if (!r.ok) banner("drop refused: " + r.status + " " + r.statusText);
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
  $("#export-jsonl").addEventListener("click", (ev) => { ev.preventDefault(); download("jsonl"); });
  $("#export-cef").addEventListener("click", (ev) => { ev.preventDefault(); download("cef"); });
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    $("#login").hidden = true;
    apply(null);
    loadCoverage();
    loadSuppressions();
    loadLearned();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (live) live.abort();
    live = null;
    askToken("Token forgotten.");
  });
  if (!apiToken()) askToken("Paste an API token (docs/API.md: Authentication).");
  apply(null);
  loadCoverage();
  loadSuppressions();
  setInterval(loadCoverage, 15000);
  loadLearned();
  setInterval(loadSuppressions, 30000);
  setInterval(loadLearned, 30000);
});
