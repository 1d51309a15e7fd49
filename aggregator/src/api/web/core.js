// credtrail web page: reads and writes the public /api/v1 endpoints only.
// The script is served as one file (/app.js), the concatenation of
// core.js, alerts.js, triage.js, detail.js, panels.js and main.js (web.rs).
// Every value from the API is written with textContent, never as HTML:
// alert fields come from audit events an attacker can shape.
// The API token is kept in sessionStorage (this tab only), sent as
// `Authorization: Bearer`, never in a cookie or a URL the server sees
// (`#token=` in the address is read once, stored, and removed).
"use strict";

const $ = (sel) => document.querySelector(sel);
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
  $("#login-why").textContent = why || "";
  $("#login").hidden = false;
  $("#token").focus();
}

// An element with a class and text (never HTML).
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmtTime(t) {
  return t ? String(t).replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

function banner(text) {
  const b = $("#banner");
  b.textContent = text;
  b.hidden = !text;
}

async function answer(r) {
  let body = {};
  try { body = await r.json(); } catch (e) { body = {}; }
  if (r.status === 401) askToken("The API needs a token (" + (body.error || "401") + ").");
  if (!r.ok) throw new Error((body.error || r.statusText) + " (" + r.status + ")");
  return body;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: authHeaders(), credentials: "omit" });
  return answer(r);
}

// POST/DELETE with a JSON body (the API refuses writes of any other type).
async function sendJSON(method, url, body) {
  const init = { method, headers: authHeaders({ "Content-Type": "application/json" }), credentials: "omit" };
  if (body !== undefined) init.body = JSON.stringify(body);
  return answer(await fetch(url, init));
}

function requestText(r) {
  let what = r.resource || "";
  if (r.subresource) what += "/" + r.subresource;
  const where = [r.namespace, r.name].filter(Boolean).join("/");
  return [r.verb, what, where, r.decision === "deny" ? "(denied)" : ""].filter(Boolean).join(" ");
}

const STATUS_TEXT = {
  open: "open",
  acknowledged: "acknowledged",
  closed_true_positive: "closed: true positive",
  closed_false_positive: "closed: false positive",
  closed_benign: "closed: benign",
};

function statusBadge(triage) {
  const st = (triage && triage.status) || "open";
  const cls = /^[a-z_]+$/.test(st) ? " st-" + st : "";
  return el("span", "status" + cls, STATUS_TEXT[st] || st);
}
