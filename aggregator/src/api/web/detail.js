// The detail drawer: one alert's facts, its activity from the source
// (AN1547), the effective permissions it granted (AN1579), the credential's
// inventory, triage, and the raw JSON.

let currentDetail = null;

function facts(rows) {
  const dl = el("dl", "facts");
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    dl.append(el("dt", null, k));
    const dd = el("dd");
    if (v instanceof Node) dd.append(v);
    else dd.textContent = Array.isArray(v) ? v.join(", ") : String(v);
    dl.append(dd);
  }
  return dl;
}

// A table with a header and rows of text cells.
function table(cls, head, rows) {
  const t = el("table", cls);
  const tr = el("tr");
  for (const h of head) tr.append(el("th", null, h));
  const thead = el("thead");
  thead.append(tr);
  const tbody = el("tbody");
  for (const r of rows) {
    const x = el("tr", r.cls || null);
    for (const c of r.cells) x.append(el("td", null, c === null || c === undefined ? "—" : c));
    tbody.append(x);
  }
  t.append(thead, tbody);
  return t;
}

function section(title, id) {
  const s = el("section", "sub");
  const h = el("h3", null, title);
  h.id = id;
  s.setAttribute("aria-labelledby", id);
  s.append(h);
  return s;
}

function activitySection(a) {
  if (!a.activity_summary && !(a.activity && a.activity.length)) return null;
  const s = section("Activity from " + (a.source_ip || "the source"), "activity-h");
  s.classList.add("activity");
  if (a.activity_summary) s.append(el("p", "mono summary", a.activity_summary));
  s.append(el("p", "muted small",
    (a.activity_count || 0) + " request(s)" + (a.occurrences > 1 ? ", " + a.occurrences + " occurrences" : "") +
    (a.activity_first ? ", " + fmtTime(a.activity_first) + " → " + fmtTime(a.activity_last) : "")));
  const rows = (a.activity || []).map((x) => ({
    cls: "phase-" + (/^[a-z]+$/.test(x.phase) ? x.phase : "other"),
    cells: [fmtTime(x.time), x.phase, x.verb, (x.resource || "") + (x.subresource ? "/" + x.subresource : ""),
      x.namespace, x.name, x.response_code, x.decision],
  }));
  if (rows.length) s.append(table("activity-table", ["time", "phase", "verb", "resource", "namespace", "name", "code", "decision"], rows));
  if (a.activity_truncated) s.append(el("p", "muted small", a.activity_truncated + " more request(s) counted, not listed"));
  return s;
}

function permissionsSection(a) {
  const p = a.details && a.details.effective_permissions;
  if (!p) return null;
  const s = section("Effective permissions granted", "perm-h");
  s.classList.add("permissions");
  const r = p.role || {};
  s.append(facts([
    ["role", [r.kind, [r.namespace, r.name].filter(Boolean).join("/")].filter(Boolean).join(" ")],
    ["known from", r.known_from],
  ]));
  const high = new Map((p.high_privilege_rules || []).map((h) => [h.index, h.reasons || []]));
  // Rules as Kubernetes writes them (camelCase), or snake_case.
  const list = (x, ...keys) => keys.map((k) => x[k]).find(Array.isArray) || [];
  const rows = (p.rules || []).map((x, i) => ({
    cls: high.has(i) ? "high" : null,
    cells: [list(x, "verbs").join(", "), list(x, "apiGroups", "api_groups").map((g) => g || "core").join(", "),
      list(x, "resources").concat(list(x, "nonResourceURLs", "nonResourceUrLs", "non_resource_urls")).join(", "),
      list(x, "resourceNames", "resource_names").join(", "),
      high.has(i) ? high.get(i).join("; ") : ""],
  }));
  if (rows.length) s.append(table("rules-table", ["verbs", "api groups", "resources", "names", "why high privilege"], rows));
  else s.append(el("p", "muted", "the role's rules are unknown"));
  if (p.rules_truncated) s.append(el("p", "muted small", p.rules_truncated + " more rule(s)"));
  s.append(el("h4", null, "Who else holds this role"));
  const ul = el("ul", "holders");
  for (const b of p.other_holders || []) {
    const subj = (b.subjects || []).map((x) => x.kind + " " + (x.namespace ? x.namespace + "/" : "") + x.name);
    ul.append(el("li", null, b.kind + " " + [b.namespace, b.name].filter(Boolean).join("/") + ": " +
      (subj.join(", ") || "no subjects") + (b.subjects_truncated ? " +" + b.subjects_truncated : "") + " (" + b.known_from + ")"));
  }
  if (!ul.children.length) ul.append(el("li", "muted", "no other binding known"));
  if (p.other_holders_truncated) ul.append(el("li", "muted", p.other_holders_truncated + " more binding(s)"));
  s.append(ul);
  return s;
}

function evidenceSection(a) {
  if (!a.evidence || !a.evidence.length) return null;
  const s = section("Evidence from agents", "evidence-h");
  s.append(table("evidence-table", ["time", "kind", "node", "pod", "process", "path"], a.evidence.map((e) => ({
    cells: [fmtTime(e.time), e.kind, e.node, e.pod, [e.comm, e.pid].filter((x) => x !== null && x !== undefined).join(" "), e.path],
  }))));
  return s;
}

// The credential's inventory (where read, where used), from the alert's link.
async function showInventory(link) {
  const box = $("#detail-inventory");
  if (typeof link.path !== "string" || !link.path.startsWith("/api/v1/credentials/")) {
    box.replaceChildren(el("p", "muted", "no inventory link"));
    return;
  }
  box.replaceChildren(el("p", "muted", "loading inventory…"));
  try {
    const inv = await getJSON(link.path);
    const s = section("Credential inventory", "inv-h");
    s.classList.add("inventory");
    s.append(facts([["credential", inv.credential_id], ["kind", inv.kind], ["identities", inv.identities]]));
    s.append(el("h4", null, "Where it was read"));
    s.append(table("reads-table", ["node", "pod", "process", "path", "first seen", "last seen", "reads"], (inv.reads || []).map((r) => ({
      cells: [r.node, r.pod, [r.comm, r.tgid ? "pid " + r.tgid : "start-up scan"].filter(Boolean).join(" "), r.path,
        fmtTime(r.first_seen), fmtTime(r.last_seen), r.reads],
    }))));
    if (!(inv.reads || []).length) s.append(el("p", "muted", "no agent saw it read"));
    s.append(el("h4", null, "Where it was used"));
    s.append(table("uses-table", ["source", "class", "node", "pod", "user", "user agents", "first seen", "last seen", "count"], (inv.uses || []).map((u) => ({
      cells: [u.source_ip, String(u.source_class || "").replace(/_/g, " "), u.node, u.pod, u.username,
        (u.user_agents || []).map((x) => x.user_agent).join(", "), fmtTime(u.first_seen), fmtTime(u.last_seen), u.count],
    }))));
    if (inv.minted_by) s.append(facts([["minted by", JSON.stringify(inv.minted_by)]]));
    const alerts = el("ul", "inv-alerts");
    for (const x of inv.alerts || []) {
      const li = el("li");
      const b = el("button", "link", x.rule + " " + x.severity + " " + fmtTime(x.time) + " from " + (x.source_ip || "?"));
      b.type = "button";
      b.addEventListener("click", () => showDetail(x.id));
      li.append(b);
      alerts.append(li);
    }
    s.append(el("h4", null, "Its alerts"), alerts);
    const tr = inv.truncated || {};
    if (tr.reads || tr.uses || tr.alerts) s.append(el("p", "muted small", "not listed: " + JSON.stringify(tr)));
    box.replaceChildren(s);
  } catch (e) {
    box.replaceChildren(el("p", "muted", "inventory unavailable: " + e.message));
  }
}

function runbookLink(url) {
  if (typeof url !== "string" || !/^(https?:\/\/|\/)/.test(url)) return null;
  const a = el("a", null, "runbook");
  a.href = url;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

async function showDetail(id) {
  const d = $("#detail");
  const body = $("#detail-body");
  currentDetail = id;
  d.dataset.id = id;
  d.hidden = false;
  let a;
  try {
    a = await getJSON("/api/v1/alerts/" + encodeURIComponent(id));
  } catch (e) {
    body.replaceChildren(el("p", null, "Could not load alert " + id + ": " + e.message));
    return;
  }
  if (currentDetail !== id) return;
  const head = el("div", "detail-head");
  head.append(el("span", "sev " + a.severity, a.severity));
  const h = el("h2", "mono", a.rule);
  h.id = "detail-title";
  head.append(h, el("span", "class", a.analytic + " · " + (a.techniques || []).join(", ")));
  const parts = [head, el("p", "reason", a.reason)];
  const ident = a.identity || {};
  const inv = a.credential_inventory ? el("button", "link", "credential inventory") : null;
  if (inv) {
    inv.type = "button";
    inv.id = "open-inventory";
    inv.addEventListener("click", () => showInventory(a.credential_inventory));
  }
  const cred = el("span", "mono", a.credential_id || (a.credential_inventory && a.credential_inventory.credential_id) || "—");
  if (inv) cred.append(" ", inv);
  parts.push(facts([
    ["time", fmtTime(a.time)],
    ["identity", ident.username],
    ["groups", ident.groups],
    ["impersonated by", ident.impersonated_by],
    ["credential", cred],
    ["source", (a.source_ip || "—") + " (" + String(a.source_class || "").replace(/_/g, " ") + ")"],
    ["claimed sources", a.claimed_source_ips],
    ["expected", (a.expected || []).map((x) => x.kind + " " + x.value + " (" + x.basis + ")")],
    ["request", requestText(a.request)],
    ["request URI", a.request.request_uri],
    ["user agent", a.request.user_agent],
    ["response", a.request.response_code],
    ["audit ids", a.audit_ids],
    ["suppressed by", a.suppressed_by],
    ["alert id", a.id],
    ["runbook", runbookLink(a.runbook_url)],
  ]));
  const inventoryBox = el("div");
  inventoryBox.id = "detail-inventory";
  const suppressBox = el("div");
  suppressBox.id = "detail-suppress";
  for (const s of [activitySection(a), permissionsSection(a), evidenceSection(a)]) if (s) parts.push(s);
  parts.push(inventoryBox);
  const triageBox = el("div");
  renderTriage(a, triageBox);
  parts.push(triageBox, suppressBox);
  const raw = el("details", "raw");
  raw.append(el("summary", null, "raw JSON"), el("pre", null, JSON.stringify(a, null, 2)));
  parts.push(raw);
  body.replaceChildren(...parts);
  $("#detail-close").focus();
}

// Shows a triage change made elsewhere in the open detail (history included).
async function refreshTriage(id) {
  try {
    const a = await getJSON("/api/v1/alerts/" + encodeURIComponent(id));
    if (currentDetail === id && triageView && triageView.id === id) triageView.update(a.triage);
  } catch (e) {
    banner("Could not refresh alert " + id + ": " + e.message);
  }
}

function closeDetail() {
  currentDetail = null;
  $("#detail").hidden = true;
  const tr = shown.get($("#detail").dataset.id || "");
  if (tr) tr.focus();
}
