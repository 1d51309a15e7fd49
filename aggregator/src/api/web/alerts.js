// The alerts table: filters, paging, live updates (new alerts and triage
// changes from /api/v1/alerts/stream), exports.

let nextToken = null;
let live = null;
const shown = new Map(); // alert id -> its row

// Current filter as URLSearchParams (only the fields that are set).
function filterParams() {
  const p = new URLSearchParams();
  const form = new FormData($("#filters"));
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    if (k === "since") p.set(k, new Date(v + "Z").toISOString());
    else p.set(k, v);
  }
  return p;
}

function statusCell(a) {
  const td = el("td", "triage-cell nowrap");
  td.append(statusBadge(a.triage));
  const who = a.triage && a.triage.assignee;
  td.append(el("div", "class", who ? "→ " + who : "unassigned"));
  return td;
}

function row(a, fresh) {
  const tr = el("tr", (fresh ? "fresh " : "") + (a.suppressed_by ? "suppressed" : ""));
  tr.dataset.id = a.id;
  tr.tabIndex = 0;
  tr.append(el("td", "mono nowrap", fmtTime(a.time)));
  const sev = el("td", "nowrap");
  sev.append(el("span", "sev " + a.severity, a.severity));
  tr.append(sev);
  const rule = el("td", "mono nowrap", a.rule);
  rule.append(el("div", "class", a.analytic));
  tr.append(rule);
  tr.append(el("td", "mono ident", a.identity.username));
  const src = el("td", "nowrap");
  src.append(el("span", "mono", a.source_ip || "—"));
  src.append(el("div", "class", String(a.source_class || "").replace(/_/g, " ")));
  tr.append(src);
  const req = el("td", "mono", requestText(a.request));
  if (a.activity_summary) req.append(el("div", "class activity-line", a.activity_summary));
  tr.append(req);
  const why = el("td", "why");
  why.append(el("div", "clamp", a.reason));
  if (a.suppressed_by) why.append(el("div", "class", "suppressed by " + a.suppressed_by));
  tr.append(why);
  tr.append(statusCell(a));
  const open = () => showDetail(a.id);
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
  return tr;
}

// Replaces the triage cell of a shown alert (after a write or a live event).
function updateRowTriage(id, triage) {
  const tr = shown.get(id);
  if (!tr) return;
  const cell = tr.querySelector(".triage-cell");
  if (cell) cell.replaceWith(statusCell({ triage }));
}

function showCount() {
  $("#count").textContent = $("#alerts tbody").children.length + (nextToken ? "+" : "") + " alert(s)";
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
      const tr = row(a, false);
      shown.set(a.id, tr);
      tbody.append(tr);
    }
    nextToken = body.next_page_token || null;
    $("#more").hidden = !nextToken;
    $("#empty").hidden = tbody.children.length > 0;
    showCount();
    banner("");
  } catch (e) {
    banner("Could not load alerts: " + e.message);
  }
}

function onLiveEvent(type, data) {
  if (type === "alert") {
    const a = JSON.parse(data);
    if (shown.has(a.id)) return;
    const tr = row(a, true);
    shown.set(a.id, tr);
    $("#alerts tbody").prepend(tr);
    $("#empty").hidden = true;
    showCount();
  } else if (type === "triage") {
    const t = JSON.parse(data);
    updateRowTriage(t.id, t.triage);
    if (currentDetail === t.id && triageView && triageView.id === t.id) refreshTriage(t.id);
  } else if (type === "skipped") {
    const n = JSON.parse(data).count;
    banner(n + " live update(s) were skipped because this page fell behind; reload to see them.");
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
      let type = "message";
      const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) {
        try { onLiveEvent(type, data.join("\n")); } catch (e) { banner("Bad live event: " + e.message); }
      }
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
  state.textContent = "live: connecting"; state.className = "live off";
  const loop = async () => {
    while (live === ctl) {
      try { await readLive(url, ctl); } catch (e) { if (live !== ctl) return; }
      state.textContent = "live: reconnecting"; state.className = "live off";
      await new Promise((res) => setTimeout(res, 3000));
    }
  };
  loop();
}

function stopLive() {
  if (live) live.abort();
  live = null;
}

// Exports are fetched with the token and saved from memory.
async function download(fmt) {
  const q = filterParams();
  q.set("format", fmt);
  try {
    const r = await fetch("/api/v1/export/alerts?" + q.toString(), { headers: authHeaders({ Accept: "*/*" }), credentials: "omit" });
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
