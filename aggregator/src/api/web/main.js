// Wiring: filters, login, logout, the detail drawer, periodic refreshes.

function apply(ev) {
  if (ev) ev.preventDefault();
  nextToken = null;
  loadAlerts(false);
  startLive();
}

function loadAll() {
  apply(null);
  loadCoverage();
  loadSuppressions();
  loadLearned();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#filters").addEventListener("submit", apply);
  $("#more").addEventListener("click", () => loadAlerts(true));
  $("#export-jsonl").addEventListener("click", (ev) => { ev.preventDefault(); download("jsonl"); });
  $("#export-cef").addEventListener("click", (ev) => { ev.preventDefault(); download("cef"); });
  $("#detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#detail").hidden) closeDetail(); });
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    $("#login").hidden = true;
    loadAll();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stopLive();
    $("#alerts tbody").replaceChildren();
    shown.clear();
    closeDetail();
    askToken("Token forgotten.");
  });
  if (!apiToken()) {
    askToken("Paste an API token (docs/API.md: Authentication).");
    return;
  }
  loadAll();
});
setInterval(() => { if (apiToken()) loadCoverage(); }, 15000);
setInterval(() => { if (apiToken()) { loadSuppressions(); loadLearned(); } }, 30000);
