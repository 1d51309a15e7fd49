// Triage in the detail view: status, assignee, note (POST
// /api/v1/alerts/{id}/triage), the alert's history, and, after a close as
// false positive, "suppress alerts like this" prefilled from the server's
// suggested_suppression (POST /api/v1/suppressions; the same guards apply).

const STATUSES = ["open", "acknowledged", "closed_true_positive", "closed_false_positive", "closed_benign"];

function field(labelText, input) {
  const l = el("label", null, labelText + " ");
  l.append(input);
  return l;
}

function historyList(triage) {
  const ol = el("ol", "history");
  for (const h of (triage && triage.history) || []) {
    const li = el("li");
    li.append(el("span", "mono small", fmtTime(h.at)));
    li.append(el("span", "who", " " + h.by));
    const parts = [];
    if (h.status) parts.push("status → " + (STATUS_TEXT[h.status] || h.status));
    if ("assignee" in h) parts.push(h.assignee === null ? "unassigned" : "assigned → " + h.assignee);
    if (parts.length) li.append(el("span", null, ": " + parts.join(", ")));
    if (h.note) li.append(el("div", "note", h.note));
    ol.append(li);
  }
  if (!ol.children.length) ol.append(el("li", "muted", "no changes yet"));
  if (triage && triage.history_dropped) ol.prepend(el("li", "muted", triage.history_dropped + " older change(s) dropped"));
  return ol;
}

// The open detail's triage panel: update(triage) shows a change made
// elsewhere (live stream) without touching what is being typed.
let triageView = null;

// The triage panel of alert `a` (its detail JSON), appended to `box`.
function renderTriage(a, box) {
  let t = a.triage || { status: "open", assignee: null };
  const sec = el("section", "triage");
  sec.setAttribute("aria-labelledby", "triage-h");
  const h = el("h3", null, "Triage");
  h.id = "triage-h";
  sec.append(h);
  const nowLine = (tr) => {
    const now = el("p", "triage-now");
    now.append(statusBadge(tr));
    now.append(el("span", null, " " + (tr.assignee ? "assigned to " + tr.assignee : "unassigned")));
    if (tr.updated_by) now.append(el("span", "muted small", " · last change by " + tr.updated_by + " at " + fmtTime(tr.updated_at)));
    return now;
  };
  let now = nowLine(t);
  sec.append(now);

  const form = el("form", "triage-form");
  form.id = "triage-form";
  const status = el("select");
  status.name = "status";
  for (const s of STATUSES) {
    const o = el("option", null, STATUS_TEXT[s]);
    o.value = s;
    if (s === t.status) o.selected = true;
    status.append(o);
  }
  const assignee = el("input");
  assignee.name = "assignee";
  assignee.maxLength = 256;
  assignee.value = t.assignee || "";
  assignee.placeholder = "unassigned";
  assignee.autocomplete = "off";
  const note = el("textarea");
  note.name = "note";
  note.rows = 2;
  note.maxLength = 4096;
  note.placeholder = "what you found, ticket number…";
  const save = el("button", "primary", "Save");
  save.type = "submit";
  const ack = el("button", null, "Acknowledge");
  ack.type = "button";
  ack.name = "ack";
  const msg = el("p", "msg");
  msg.setAttribute("role", "status");
  form.append(field("Status", status), field("Assignee", assignee), field("Note", note), save, ack, msg);
  sec.append(form);

  const send = async (body) => {
    msg.className = "msg";
    if (!Object.keys(body).length) { msg.textContent = "Nothing changed."; return; }
    save.disabled = ack.disabled = true;
    try {
      const r = await sendJSON("POST", "/api/v1/alerts/" + encodeURIComponent(a.id) + "/triage", body);
      updateRowTriage(a.id, r.triage);
      update(r.triage);
      status.value = r.triage.status;
      assignee.value = r.triage.assignee || "";
      note.value = "";
      msg.textContent = "Saved.";
      if (r.suggested_suppression) showSuppressForm(r.suggested_suppression, a);
      else if (r.suggestion_unavailable) {
        $("#detail-suppress").replaceChildren(el("p", "muted", "No suppression offered: " + r.suggestion_unavailable));
      }
    } catch (e) {
      msg.textContent = "Not saved: " + e.message;
      msg.className = "msg err";
    }
    save.disabled = ack.disabled = false;
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = {};
    if (status.value !== t.status) body.status = status.value;
    const who = assignee.value.trim();
    if (who !== (t.assignee || "")) body.assignee = who === "" ? null : who;
    if (note.value.trim()) body.note = note.value;
    send(body);
  });
  ack.addEventListener("click", () => send({ status: "acknowledged" }));

  const hh = el("h4", null, "History");
  let hist = historyList(t);
  sec.append(hh, hist);
  box.append(sec);
  // A newer state (with its history when the server sent one).
  const update = (tr) => {
    const keepHistory = !tr.history;
    t = Object.assign({}, tr, keepHistory ? { history: t.history, history_dropped: t.history_dropped } : {});
    const n = nowLine(t);
    now.replaceWith(n);
    now = n;
    if (!keepHistory) {
      const h2 = historyList(t);
      hist.replaceWith(h2);
      hist = h2;
    }
  };
  triageView = { id: a.id, update };
}

function isoToLocal(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toISOString().slice(0, 16);
}

// "Suppress alerts like this": the suggestion, editable, submitted as is.
function showSuppressForm(s, a) {
  const box = $("#detail-suppress");
  box.replaceChildren();
  const form = el("form", "suppress-form");
  form.id = "suppress-form";
  form.append(el("h3", null, "Suppress alerts like this"));
  form.append(el("p", "muted small",
    "Prefilled from alert " + a.id + ". Nothing is suppressed until you submit; the suppression guards apply."));
  const inputs = {};
  const add = (name, label, value, attrs) => {
    const i = el("input");
    i.name = name;
    i.value = value || "";
    Object.assign(i, attrs || {});
    inputs[name] = i;
    form.append(field(label, i));
  };
  add("owner", "Owner", s.owner, { required: true });
  add("reason", "Reason", s.reason, { required: true, size: 60 });
  add("expires", "Expires (UTC)", isoToLocal(s.expires), { type: "datetime-local", required: true });
  const match = s.match || {};
  for (const k of ["rule", "analytic", "username", "credential_id", "source_cidr", "namespace", "node"]) {
    if (k in match) add("match." + k, "match " + k, match[k]);
  }
  const submit = el("button", "primary", "Create suppression");
  submit.type = "submit";
  const cancel = el("button", null, "Cancel");
  cancel.type = "button";
  const msg = el("p", "msg");
  msg.setAttribute("role", "status");
  form.append(submit, cancel, msg);
  cancel.addEventListener("click", () => box.replaceChildren());
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { owner: inputs.owner.value, reason: inputs.reason.value, match: {} };
    body.expires = new Date(inputs.expires.value + "Z").toISOString();
    for (const [k, i] of Object.entries(inputs)) {
      if (k.startsWith("match.") && i.value.trim()) body.match[k.slice(6)] = i.value.trim();
    }
    submit.disabled = true;
    try {
      const r = await sendJSON("POST", "/api/v1/suppressions", body);
      box.replaceChildren(el("p", "ok", "Suppression " + r.id + " created: alerts like this are now suppressed until " + fmtTime(r.expires) + "."));
      loadSuppressions();
    } catch (e) {
      msg.textContent = "Refused: " + e.message;
      msg.className = "msg err";
      submit.disabled = false;
    }
  });
  box.append(form);
}
