// Drives the credtrail web page in Debian's Chromium (headless) with
// playwright-core. Run by aggregator/tests/it/web_browser.rs, which starts
// the aggregator and passes everything in the environment. Each step waits
// at most a few seconds and fails with a message naming what the page did
// not show.
"use strict";

const fs = require("fs");
const https = require("https");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT);

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error("missing environment variable " + k);
  return v;
};
const BASE = env("BASE");
const TOKEN = env("TOKEN");
const SHOTS = env("SHOTS");
const WAIT = 5000;

let current = "start";
let failShot = async () => {};
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  console.log("ok   " + name + " (" + (Date.now() - t0) + " ms)");
}

// Waits until fn(arg) is true in the page, failing with `what`.
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch (e) {
    throw new Error("the page did not show " + what + " within " + WAIT + " ms");
  }
}

function postAudit(file) {
  const body = fs.readFileSync(file);
  const u = new URL(env("WEBHOOK"));
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: u.hostname, port: u.port, path: u.pathname, method: "POST",
      ca: fs.readFileSync(env("CA_FILE")),
      headers: {
        "Content-Type": "application/json", "Content-Length": body.length,
        Authorization: "Bearer " + env("WEBHOOK_TOKEN"),
      },
      timeout: WAIT,
    }, (res) => {
      let text = "";
      res.on("data", (d) => { text += d; });
      res.on("end", () => res.statusCode === 200 ? resolve() : reject(new Error("webhook answered " + res.statusCode + ": " + text)));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const rowsText = () => Array.from(document.querySelectorAll("#alerts tbody tr")).map((r) => r.textContent);

async function main() {
  const browser = await chromium.launch({
    executablePath: env("CHROMIUM"),
    headless: true,
    // No sandbox as root; no background traffic (the network is closed).
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  const problems = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    failShot = () => page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
    page.on("pageerror", (e) => problems.push("script error: " + e.message));
    page.on("dialog", (d) => { problems.push("a dialog opened: " + d.message()); d.dismiss(); });
    page.on("console", (m) => {
      if (m.type() === "error" && !/401|Unauthorized/.test(m.text())) problems.push("console error: " + m.text());
    });
    const shot = (name) => page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: false });

    await step("the page asks for a token and shows no data without one", async () => {
      const resp = await page.goto(BASE + "/", { timeout: WAIT });
      const h = resp.headers();
      const csp = h["content-security-policy"] || "";
      for (const d of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) {
        if (!csp.includes(d)) throw new Error("the page's CSP lacks " + d + ": " + csp);
      }
      if (csp.includes("unsafe-inline") || csp.includes("unsafe-eval")) throw new Error("the CSP allows inline script: " + csp);
      if (h["x-frame-options"] !== "DENY" || h["x-content-type-options"] !== "nosniff") {
        throw new Error("missing X-Frame-Options/X-Content-Type-Options: " + JSON.stringify(h));
      }
      const inline = await page.evaluate(() => Array.from(document.scripts).filter((x) => !x.src).length +
        document.querySelectorAll("[onclick],[onload],[onerror],[style]").length);
      if (inline) throw new Error(inline + " inline script/handler/style attribute(s) in the page");
      await until(page, "the token form", () => !document.querySelector("#login").hidden);
      const rows = await page.evaluate(rowsText);
      if (rows.length) throw new Error("alerts shown before login: " + rows.length);
      await shot("login");
    });

    await step("log in with the token (kept in sessionStorage)", async () => {
      await page.fill("#token", TOKEN);
      await page.click("#login button[type=submit]");
      await until(page, "three alerts after login", () => document.querySelectorAll("#alerts tbody tr").length >= 3);
      const kept = await page.evaluate(() => sessionStorage.getItem("credtrail.token"));
      if (kept !== TOKEN) throw new Error("the token is not in sessionStorage");
      const cookies = await ctx.cookies();
      if (cookies.length) throw new Error("the page set cookies: " + JSON.stringify(cookies));
      if (!(await page.isHidden("#login"))) throw new Error("the token form is still shown");
      await until(page, "the live stream connected", () => document.querySelector("#live").textContent === "live");
      await shot("alerts");
    });

    await step("hostile alert fields are shown as text, never run", async () => {
      const xss = env("XSS_ACTOR");
      const rows = await page.evaluate(rowsText);
      if (!rows.some((t) => t.includes(xss))) throw new Error("the hostile identity is not shown literally; rows: " + rows.join(" | "));
      const state = await page.evaluate(() => ({ pwned: window.__pwned, imgs: document.querySelectorAll("img, script:not([src])").length }));
      if (state.pwned !== undefined) throw new Error("alert fields ran script: __pwned=" + state.pwned);
      if (state.imgs) throw new Error(state.imgs + " element(s) made from alert fields");
      // Its detail too: every field, the request name (a <script> tag) and the raw JSON.
      await page.click("#alerts tbody tr:has(td.ident:text-is('" + xss.replace(/'/g, "\\'") + "'))");
      await until(page, "the hostile alert's details, as text", (x) => {
        const d = document.querySelector("#detail");
        return !d.hidden && d.textContent.includes(x) && d.textContent.includes("<script>window.__pwned=2</script>");
      }, xss);
      const after = await page.evaluate(() => ({ pwned: window.__pwned, els: document.querySelectorAll("#detail img, #detail script").length }));
      if (after.pwned !== undefined || after.els) throw new Error("the detail view ran or built markup from alert fields: " + JSON.stringify(after));
      await page.click("#detail-close");
    });

    await step("filter by analytic", async () => {
      await page.selectOption("#filters select[name=analytic]", "AN1579");
      await page.click("#filters button[type=submit]");
      await until(page, "only AN1579 rows", () => {
        const r = Array.from(document.querySelectorAll("#alerts tbody tr"));
        return r.length >= 2 && r.every((x) => x.textContent.includes("AN1579"));
      });
      await page.selectOption("#filters select[name=analytic]", "AN1547");
      await page.click("#filters button[type=submit]");
      await until(page, "only the AN1547 row", () => {
        const r = Array.from(document.querySelectorAll("#alerts tbody tr"));
        return r.length === 1 && r[0].textContent.includes("CT1547");
      });
      await shot("filtered");
    });

    await step("open an alert and its details", async () => {
      await page.click("#alerts tbody tr");
      await until(page, "the alert's details", () => {
        const d = document.querySelector("#detail");
        return d && !d.hidden && d.textContent.includes("system:serviceaccount:ci:builder");
      });
      await shot("detail");
    });

    await step("the AN1547 alert's activity from its source", async () => {
      await until(page, "the activity summary and list", () => {
        const s = document.querySelector("#detail section.activity");
        return s && s.querySelector(".summary") && s.querySelector(".summary").textContent.includes("then:") &&
          s.querySelector(".summary").textContent.includes("get secrets in kube-system 200") && s.querySelector(".summary").textContent.includes("create pods in ci 403") &&
          s.querySelectorAll(".activity-table tbody tr").length >= 3;
      });
      await page.locator("#detail section.activity").scrollIntoViewIfNeeded();
      await shot("activity");
    });

    await step("the credential's inventory, one click away", async () => {
      await page.click("#open-inventory");
      await until(page, "where the credential was used (127.99.0.7)", () => {
        const s = document.querySelector("#detail-inventory .inventory");
        return s && s.querySelector(".uses-table") && s.querySelector(".uses-table").textContent.includes("127.99.0.7");
      });
      await page.locator("#detail-inventory").scrollIntoViewIfNeeded();
      await shot("inventory");
    });

    await step("an AN1579 alert's effective permissions and other holders", async () => {
      await page.selectOption("#filters select[name=analytic]", "AN1579");
      await page.click("#filters button[type=submit]");
      await until(page, "alice's grant in the list", () =>
        Array.from(document.querySelectorAll("#alerts tbody td.ident")).some((x) => x.textContent === "alice"));
      await page.click("#alerts tbody tr:has(td.ident:text-is('alice'))");
      await until(page, "the role's rules with the high-privilege ones marked", () => {
        const s = document.querySelector("#detail section.permissions");
        const high = s && s.querySelector(".rules-table tr.high");
        return s && s.textContent.includes("ClusterRole admin") && high && high.textContent.includes("core") &&
          high.textContent.includes("secrets") &&
          s.querySelector(".holders");
      });
      await page.locator("#detail section.permissions").scrollIntoViewIfNeeded();
      await shot("permissions");
      await page.click("#detail-close");
    });

    await step("a live alert arrives while the page is open", async () => {
      await page.selectOption("#filters select[name=analytic]", "");
      await page.click("#filters button[type=submit]");
      await until(page, "all alerts again", () => document.querySelectorAll("#alerts tbody tr").length >= 3);
      await until(page, "the live stream connected", () => document.querySelector("#live").textContent === "live");
      const before = await page.evaluate(() => document.querySelectorAll("#alerts tbody tr").length);
      await postAudit(env("LIVE_EVENT"));
      await until(page, "the live alert (by eve) on top", (n) => {
        const r = document.querySelectorAll("#alerts tbody tr");
        return r.length === n + 1 && r[0].textContent.includes("eve");
      }, before);
      await shot("live");
    });

    await step("triage the live alert: acknowledge", async () => {
      await page.click("#alerts tbody tr:first-child");
      await until(page, "the live alert's details with a triage panel", () => {
        const d = document.querySelector("#detail");
        return !d.hidden && d.textContent.includes("eve") && document.querySelector("#triage-form");
      });
      await page.click("#triage-form button[name=ack]");
      await until(page, "status acknowledged in the detail, the row and the history", () => {
        const now = document.querySelector(".triage-now");
        const cell = document.querySelector("#alerts tbody tr:first-child .triage-cell");
        const hist = document.querySelector("ol.history");
        return now && now.textContent.includes("acknowledged") && cell && cell.textContent.includes("acknowledged") &&
          hist && hist.textContent.includes("token:analyst") && hist.textContent.includes("status → acknowledged");
      });
    });

    await step("assign and write a note (shown as text)", async () => {
      await page.fill("#triage-form input[name=assignee]", "alice");
      await page.fill("#triage-form textarea[name=note]", "checking with <b>platform</b> team");
      await page.click("#triage-form button[type=submit]");
      await until(page, "the assignee and the literal note in the history", () => {
        const hist = document.querySelector("ol.history");
        return hist && hist.textContent.includes("assigned → alice") &&
          hist.textContent.includes("checking with <b>platform</b> team") && !hist.querySelector("b");
      });
      await until(page, "the row assigned to alice", () =>
        document.querySelector("#alerts tbody tr:first-child .triage-cell").textContent.includes("alice"));
      await shot("triage");
    });

    await step("close as false positive, then suppress alerts like this (prefilled)", async () => {
      await page.selectOption("#triage-form select[name=status]", "closed_false_positive");
      await page.fill("#triage-form textarea[name=note]", "platform team test grant, CHG-42");
      await page.click("#triage-form button[type=submit]");
      await until(page, "the suppression form prefilled with the alert's rule, identity and source", () => {
        const f = document.querySelector("#suppress-form");
        const v = (n) => { const i = f && f.querySelector("input[name='" + n + "']"); return i ? i.value : null; };
        const rule = document.querySelector("#detail-title").textContent;
        return f && rule.startsWith("CT1579-") && v("match.rule") === rule && v("match.username") === "eve" &&
          v("match.source_cidr") === "127.99.0.9/32" && v("owner") === "token:analyst" && v("expires");
      });
      await page.locator("#suppress-form").scrollIntoViewIfNeeded();
      await shot("suppress");
      await page.click("#suppress-form button[type=submit]");
      await until(page, "the created suppression", () => {
        const ok = document.querySelector("#detail-suppress .ok");
        return ok && /Suppression api-\S+ created/.test(ok.textContent);
      });
      await until(page, "the suppression in the side panel", () =>
        document.querySelector("#suppressions").textContent.includes("\"username\":\"eve\""));
    });

    await step("filter by status and assignee", async () => {
      await page.click("#detail-close");
      await page.selectOption("#filters select[name=status]", "closed");
      await page.fill("#filters input[name=assignee]", "alice");
      await page.click("#filters button[type=submit]");
      await until(page, "only the closed alert assigned to alice", () => {
        const r = document.querySelectorAll("#alerts tbody tr");
        return r.length === 1 && r[0].querySelector("td.ident").textContent === "eve" && r[0].textContent.includes("false positive");
      });
      await page.selectOption("#filters select[name=status]", "open");
      await page.fill("#filters input[name=assignee]", "");
      await page.click("#filters button[type=submit]");
      await until(page, "the open alerts without the closed one", () => {
        const r = Array.from(document.querySelectorAll("#alerts tbody tr"));
        return r.length === 3 && r.every((x) => x.querySelector("td.ident").textContent !== "eve");
      });
    });

    await step("forget the token: nothing kept, nothing shown, the prompt is back", async () => {
      await page.click("#logout");
      await until(page, "an empty table and the token prompt", () =>
        !sessionStorage.getItem("credtrail.token") && !document.querySelector("#login").hidden &&
        document.querySelectorAll("#alerts tbody tr").length === 0);
      await page.reload();
      await until(page, "the token prompt after a reload", () => !document.querySelector("#login").hidden);
      if ((await page.evaluate(rowsText)).length) throw new Error("alerts shown after forgetting the token");
    });

    if (problems.length) throw new Error(problems.join("\n"));
  } catch (e) {
    await failShot();
    throw e;
  } finally {
    await browser.close();
  }
}

main().then(
  () => console.log("browser: all steps passed"),
  (e) => {
    console.error("FAILED at step \"" + current + "\": " + e.message + "\n(screenshot: " + path.join(SHOTS, "failure.png") + ")");
    process.exit(1);
  },
);
