// End-to-end test of the MineBox Cloud account page in real headless Chromium (Debian's,
// driven by playwright-core) against the real service, started by its Rust test
// (crates/daemons/cloud/tests/web.rs) with a real PostgreSQL and a real SMTP sink:
//
//   node tests/web/cloud.mjs BASE_URL MAILDIR PAIRING_CODE SCREENSHOT_DIR HTML_NAME
//
// MAILDIR is the SMTP sink's Maildir (the mailed links to EMAIL are read there); PAIRING_CODE a code a
// real box (minebox-cloud-link) is waiting with; HTML_NAME the name the box is renamed to,
// which must show as text. Exits non-zero on the first failed expectation, naming it.
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";

const [base, maildir, code, shots, htmlName] = process.argv.slice(2);
if (!htmlName) {
  console.error("usage: node cloud.mjs BASE_URL MAILDIR PAIRING_CODE SCREENSHOT_DIR HTML_NAME");
  process.exit(2);
}
fs.mkdirSync(shots, { recursive: true });
const EMAIL = "ann@example.org";
const PASSWORD = "correct horse battery";
const NEW_PASSWORD = "another horse battery staple";

let step = "start";
const t0 = Date.now();
function log(s) { step = s; console.log(`cloud-web: ${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`); }

// The mailed messages, oldest first, as the sink stored them.
function mails() {
  const dir = path.join(maildir, "new");
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((f) => path.join(dir, f))
    .map((p) => ({ p, t: fs.statSync(p).mtimeMs }))
    .sort((a, b) => a.t - b.t || a.p.localeCompare(b.p))
    .map(({ p }) => fs.readFileSync(p, "utf8"));
}
// The link starting with `marker` in the latest message to `to`, once one has arrived.
async function mailLink(to, marker) {
  const end = Date.now() + 20000;
  const link = new RegExp(`https?://[^\\s]+${marker.replace(/[?]/g, "\\?")}[0-9a-f]{64}`);
  while (Date.now() < end) {
    const found = mails()
      .map((m) => m.replace(/=\r?\n/g, "").replace(/=3D/g, "="))
      .filter((m) => m.includes(`To: ${to}`) && link.test(m));
    if (found.length) return found[found.length - 1].match(link)[0];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} with a ${marker} link arrived in ${maildir}`);
}

// A page on another origin of the same site (127.0.0.1, another port): a form that posts to
// the service's logout, the cross-site request forgery the service must refuse.
const attacker = http.createServer((req, res) => {
  res.setHeader("Content-Type", "text/html");
  res.end(`<!doctype html><form method="POST" action="${base}/api/v1/logout"><button id="go">win a prize</button></form>`);
});
await new Promise((r) => attacker.listen(0, "127.0.0.1", r));
const attackerUrl = `http://127.0.0.1:${attacker.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

const consoleErrors = [];
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  page = await ctx.newPage();
  page.on("console", (m) => {
    // A refused request (401 before login, the wrong password) is logged by Chromium; anything
    // else (a script error, a Content-Security-Policy violation) fails the test.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  const alerts = [];
  page.on("dialog", async (d) => {
    if (d.type() === "confirm") return d.accept();
    alerts.push(`${d.type()}: ${d.message()}`);
    return d.dismiss();
  });
  const visible = (view) => page.waitForSelector(`#view-${view}:not([hidden])`);
  const text = (sel) => page.textContent(sel);
  const noticeSays = (re) => page.waitForFunction((src) => {
    const n = document.getElementById("notice");
    return !n.hidden && new RegExp(src, "i").test(n.textContent);
  }, re.source);

  log("the page: login first, under its policy");
  const first = await page.goto(base);
  assert.match(first.headers()["content-security-policy"], /script-src 'self'/);
  await visible("login");
  await page.screenshot({ path: `${shots}/login.png` });

  log("sign up: check your mail");
  await page.click("text=Create an account");
  await visible("signup");
  await page.fill("#signup-email", EMAIL);
  await page.fill("#signup-name", "Ann");
  await page.fill("#signup-password", PASSWORD);
  await page.click("#signup-submit");
  await visible("mail");
  assert.match(await text("#mail-text"), /open the link mailed to ann@example\.org/);
  await page.screenshot({ path: `${shots}/check-mail.png` });

  log("the mailed link verifies and ends on the login, without the token in the address");
  const verifyLink = await mailLink(EMAIL, "/verify?token=");
  await page.goto(verifyLink);
  await noticeSays(/verified: log in/);
  await visible("login");
  assert.ok(!page.url().includes("token"), page.url());
  await page.screenshot({ path: `${shots}/verified.png` });
  await page.goto(verifyLink);
  await page.waitForFunction(() => /used already/.test(document.getElementById("verify-text").textContent));
  assert.match(await text("#verify-text"), /^This verification link was used already/);

  log("a wrong password is said in words");
  await page.click('#view-verify a[href="#login"]');
  await visible("login");
  await page.fill("#login-email", EMAIL);
  await page.fill("#login-password", "not the password");
  await page.click("#login-submit");
  await page.waitForFunction(() => document.getElementById("login-error").textContent !== "");
  assert.equal(await text("#login-error"), "Wrong email or password.");
  await page.screenshot({ path: `${shots}/wrong-password.png` });

  log("log in: the account, free plan, nothing used, no downloads, no box");
  await page.fill("#login-password", PASSWORD);
  await page.click("#login-submit");
  await visible("account");
  assert.equal(await text("#who"), EMAIL);
  await page.waitForSelector('[data-testid="plan"]');
  assert.equal(await text('[data-testid="plan"]'), "free");
  assert.equal(await text('[data-testid="limit-downloads"]'), "1 a month");
  assert.equal(await text('[data-testid="limit-bytes"]'), "50 GiB a month");
  assert.equal(await text('[data-testid="limit-devices"]'), "1");
  await page.waitForSelector('[data-testid="usage-downloads"]');
  assert.equal(await text('[data-testid="usage-downloads"]'), "0 of 1");
  assert.equal(await text('[data-testid="usage-bytes"]'), "0 B of 50 GiB");
  await page.waitForSelector('[data-testid="downloads-empty"]:not([hidden])');
  assert.equal(await text('[data-testid="downloads-empty"]'), "No snapshot downloads this month.");
  assert.equal(await page.isHidden('[data-testid="downloads"]'), true);
  await page.waitForSelector('[data-testid="devices-empty"]:not([hidden])');
  await page.screenshot({ path: `${shots}/account-empty.png`, fullPage: true });

  log("pair the box with its code (typed in lower case)");
  await page.fill("#pair-code", code.toLowerCase());
  await page.click("#pair-submit");
  await noticeSays(/linked to your account/);
  await page.waitForSelector("tr[data-device]");
  assert.equal(await page.locator("tr[data-device]").count(), 1);
  assert.equal(await text('[data-testid="device-name"]'), "pi in the attic");
  assert.equal(await page.isHidden('[data-testid="devices-empty"]'), true);

  log("rename it to HTML: it shows as text, nothing runs");
  await page.click('[data-testid="rename"]');
  await page.fill('[data-testid="rename-input"]', htmlName);
  await page.click('[data-testid="rename-save"]');
  await page.waitForFunction((n) => document.querySelector('[data-testid="device-name"]')?.textContent === n, htmlName);
  assert.equal(await page.locator("#devices img").count(), 0, "no element was made from the name");
  assert.equal(await page.evaluate(() => document.images.length), 1, "only the brand icon");
  await page.screenshot({ path: `${shots}/device-renamed.png`, fullPage: true });

  log("the leaderboard switch");
  await page.check('[data-testid="leaderboard-public"]');
  await page.waitForFunction(() => /shows you as Ann/.test(document.getElementById("leaderboard-text").textContent));

  log("a form on another origin posting to logout is refused; the session lives on");
  const evil = await ctx.newPage();
  await evil.goto(attackerUrl);
  const [forged] = await Promise.all([evil.waitForResponse(`${base}/api/v1/logout`), evil.click("#go")]);
  assert.equal(forged.status(), 403, "the forged logout");
  // Refused for the missing header, so the cookie did go with it (else it would be 401).
  assert.match((await forged.json()).error, /MineBox-CSRF: 1/);
  await evil.close();
  assert.equal((await page.request.get(`${base}/api/v1/me`)).status(), 200, "still logged in");

  log("unlink the box");
  await page.click('[data-testid="unlink"]');
  await noticeSays(/unlinked from your account/);
  await page.waitForSelector('[data-testid="devices-empty"]:not([hidden])');
  assert.equal(await page.locator("tr[data-device]").count(), 0);
  await page.screenshot({ path: `${shots}/account.png`, fullPage: true });

  log("log out");
  await page.click('[data-testid="logout"]');
  await visible("login");
  await noticeSays(/logged out/);
  assert.equal((await page.request.get(`${base}/api/v1/me`)).status(), 401, "the session ended");

  log("forgot the password: the mailed link sets a new one");
  await page.click("text=Forgot your password?");
  await visible("forgot");
  await page.fill("#forgot-email", EMAIL);
  await page.click("#view-forgot button[type=submit]");
  await visible("mail");
  assert.match(await text("#mail-text"), /reset link is on its way/);
  const resetLink = await mailLink(EMAIL, "/reset?token=");
  await page.goto(resetLink);
  await visible("reset");
  assert.ok(!page.url().includes("token"), page.url());
  await page.fill("#reset-password", NEW_PASSWORD);
  await page.fill("#reset-confirm", "something else entirely");
  await page.click("#view-reset button[type=submit]");
  await page.waitForFunction(() => document.getElementById("reset-error").textContent !== "");
  assert.equal(await text("#reset-error"), "The two passwords differ.");
  await page.fill("#reset-confirm", NEW_PASSWORD);
  await page.click("#view-reset button[type=submit]");
  await noticeSays(/password changed/);
  await visible("login");
  await page.fill("#login-email", EMAIL);
  await page.fill("#login-password", NEW_PASSWORD);
  await page.click("#login-submit");
  await visible("account");
  assert.equal(await text("#who"), EMAIL);

  assert.deepEqual(alerts, [], "no alert ran");
  assert.deepEqual(consoleErrors, [], "no script errors or policy violations");
  log("ok");
} catch (e) {
  console.error(`cloud-web: FAILED at "${step}": ${e.stack || e}`);
  if (consoleErrors.length) console.error(`cloud-web: the page's console said:\n${consoleErrors.join("\n")}`);
  if (page) {
    await page.screenshot({ path: `${shots}/failed.png`, fullPage: true }).catch(() => {});
    console.error(`cloud-web: the page at ${page.url()} shows:\n${await page.innerText("body").catch((x) => x.message)}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
  attacker.close();
}
