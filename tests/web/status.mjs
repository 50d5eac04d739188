// End-to-end test of the status page in real headless Chromium (Debian's, driven by
// playwright-core) against the real local stack: bcoin regtest under the supervisor, the
// stratum server with simulated Bitaxes, the snapshot agent and the status service.
//
//   node tests/web/status.mjs http://127.0.0.1:18080 SETTINGS_FILE SCREENSHOT_DIR
//
// Exits non-zero on the first failed expectation, naming it.
import { chromium } from "playwright-core";
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import crypto from "node:crypto";
import assert from "node:assert/strict";

const [base, settingsFile, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const ADMIN = "correct horse battery";
const VIEWER = "just looking around";

// RFC 6238 (HMAC-SHA-1, 6 digits) of a base32 secret at a 30 s step: the authenticator app.
function totp(base32, step) {
  let bits = "";
  for (const c of base32.replace(/=+$/, "")) bits += "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = crypto.createHmac("sha1", key).update(msg).digest();
  const o = h[19] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, "0");
}

// A real HTTP endpoint for the block-found webhook: it records what it receives.
const hooks = [];
const hookServer = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => { try { hooks.push(JSON.parse(body)); } catch (_) { hooks.push({ raw: body }); } res.end("ok"); });
});
await new Promise((r) => hookServer.listen(0, "127.0.0.1", r));
const hookUrl = `http://127.0.0.1:${hookServer.address().port}/hook`;

// A raw Stratum V1 client on the stack's stratum port: subscribes, authorizes as `user` and
// submits a share for a job the server never sent; the server's refusal (its JSON-RPC error).
async function refusedShare(user) {
  const sock = net.connect(3333, "127.0.0.1");
  sock.setEncoding("utf8");
  let buf = "";
  const waiting = new Map();
  sock.on("data", (d) => {
    buf += d;
    for (let i; (i = buf.indexOf("\n")) >= 0;) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (waiting.has(msg.id)) waiting.get(msg.id)(msg);
    }
  });
  await new Promise((r, j) => { sock.once("connect", r); sock.once("error", j); });
  const call = (id, method, params) => new Promise((r) => {
    waiting.set(id, r);
    sock.write(JSON.stringify({ id, method, params }) + "\n");
  });
  const sub = await call(1, "mining.subscribe", ["e2e/1.0"]);
  const auth = await call(2, "mining.authorize", [user, "x"]);
  assert.equal(auth.result, true, `authorize ${user}: ${JSON.stringify(auth)}`);
  const en2 = "00".repeat(sub.result[2]);
  const reply = await call(3, "mining.submit", [user, "no-such-job", en2, "00000000", "00000000"]);
  sock.destroy();
  assert.ok(reply.result !== true && reply.error, `a share of a made-up job taken: ${JSON.stringify(reply)}`);
  return reply.error;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let step = "start";
const t0 = Date.now();
function log(s) { step = s; console.log(`e2e: ${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`); }
async function until(what, fn, secs = 90) {
  const end = Date.now() + secs * 1000;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e.message; }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(e.message));

  log("first visit asks for an admin password; nothing works before it");
  const before = await page.request.get(`${base}/api/v1/overview`);
  assert.equal(before.status(), 401, "API closed before setup");
  await page.goto(base);
  await page.waitForSelector("#auth:not([hidden])");
  assert.match(await page.textContent("#auth-title"), /Welcome/);
  await page.screenshot({ path: `${shots}/setup.png` });
  await page.fill("#auth-password", "short");
  assert.equal(await page.$eval("#auth-password", (el) => el.validity.valid), false, "the form refuses a short password");
  const short = await page.request.post(`${base}/api/v1/auth/setup`, { data: { password: "short" } });
  assert.equal(short.status(), 422, "and so does the server");
  assert.match((await short.json()).error, /at least 8/);
  await page.fill("#auth-password", ADMIN);
  await page.fill("#auth-confirm", ADMIN);
  await page.click("#auth-submit");

  log("overview shows the coin, miners and live numbers");
  await page.waitForSelector("#coin-btc");
  await until("miners connected", async () => Number(await page.textContent('[data-testid="miners-btc"]')) >= 1);
  await until("node synced", async () => (await page.textContent('[data-testid="node-state-btc"]')) === "synced");
  // The local stack sets no solo pool: its node gives the work, and the card says so.
  await until("mining on its own node", async () => (await page.textContent('[data-testid="mining-btc"]')) === "On your own node");
  assert.match(await page.textContent('[data-testid="mining-counts-btc"]'), /^Own node: \d+ shares accepted, \d+ blocks? found$/, "no pool, no pool counts");
  await until("a hashrate", async () => !/^0 /.test(await page.textContent('[data-testid="hashrate-btc"]')));
  assert.match(await page.textContent('[data-testid="stratum-url-btc"]'), /127\.0\.0\.1/);
  const firstBlocks = Number(await page.textContent('[data-testid="blocks-btc"]'));
  const firstAt = await page.evaluate(() => window.performance.getEntriesByType("navigation").length);
  // Live: the count changes without any navigation (regtest blocks come every few seconds).
  await until("the blocks count to rise live", async () => Number(await page.textContent('[data-testid="blocks-btc"]')) > firstBlocks, 120);
  assert.equal(await page.evaluate(() => window.performance.getEntriesByType("navigation").length), firstAt, "no reload happened");
  assert.match(await page.textContent("#live"), /live/);
  await page.waitForSelector("#chart-btc .chart-box");
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  log("miners page lists the simulated Bitaxes with their user agent");
  await page.goto(`${base}/#miners`);
  await until("worker rows", async () => (await page.locator("#workers tbody tr").count()) >= 3);
  assert.match(await page.textContent("#workers"), /bitaxe\/BM1370/);
  assert.match(await page.textContent("#workers"), /sim1/);
  // Miners on the LAN: the section and the admin's Scan button. Not clicked here: a scan
  // would ask the devices of the network this check runs on (tests/lan_miners.rs scans a
  // network of its own).
  assert.ok(await page.isVisible('[data-testid="lan-scan"]'), "the admin can scan");
  await until("LAN section read", async () => /Not scanned yet/.test(await page.textContent('[data-testid="lan-status"]')));
  // The stack mines one coin: "Mine on this box" needs no coin picker (tests/lan_miners.rs
  // covers two coins through the API).
  assert.equal(await page.locator('[data-testid="lan-coin"] option').count(), 1, "the one enabled coin");
  assert.ok(!(await page.isVisible('[data-testid="lan-coin"]')), "no coin picker with one coin");
  await page.screenshot({ path: `${shots}/miners.png`, fullPage: true });

  log("share history (issue 17): a share sent to a made-up job is refused, and the Miners page shows it by reason");
  const payTo = /payout_address\s*=\s*"([^"]+)"/.exec(fs.readFileSync(settingsFile, "utf8"))[1];
  const refusal = await refusedShare(`${payTo}.e2e`);
  // The stratum server's codes and the names its share history keeps them under.
  const reason = { 20: "other", 21: "stale", 22: "duplicate", 23: "low_difficulty" }[refusal[0]];
  assert.ok(reason, `refusal ${JSON.stringify(refusal)}`);
  const refusedRow = `[data-testid="shares-refused-btc-${reason}"]`;
  // The stratum server stores shares every 10 s here; the page reads them when it is shown.
  await until(`the ${reason} refusal in the share history`, async () => {
    await page.goto(`${base}/#overview`);
    await page.goto(`${base}/#miners`);
    await page.waitForSelector('[data-testid="shares-table-btc"]');
    return (await page.locator(refusedRow).count()) === 1;
  }, 60);
  const cells = await page.locator(`${refusedRow} td`).allTextContents();
  assert.equal(cells[0], `refused: ${reason.replace("_", " ")}`);
  assert.ok(Number(cells[1]) >= 1 && Number(cells[2]) >= Number(cells[1]), `48 h and 30 days counts: ${cells}`);
  const acceptedCells = await page.locator('[data-testid="shares-table-btc"] tbody tr').first().locator("td").allTextContents();
  assert.ok(Number(acceptedCells[1]) > 0, `the simulated Bitaxes' accepted shares: ${acceptedCells}`);
  assert.equal(await page.locator('[data-testid="shares-btc"] svg.share-bars').count(), 2, "hourly and daily bars");
  assert.ok(await page.locator('[data-testid="shares-btc"] rect.share-refused').count() >= 2, "a refused bar in the hours and in the days");
  await page.screenshot({ path: `${shots}/share-history.png`, fullPage: true });

  log("blocks page shows accepted blocks");
  await page.goto(`${base}/#blocks`);
  await until("an accepted block", async () => /accepted|confirmed/.test(await page.textContent("#blocks tbody")));
  await page.screenshot({ path: `${shots}/blocks.png`, fullPage: true });

  log("nodes page");
  await page.goto(`${base}/#nodes`);
  await until("the node card", async () => /bcoin/.test(await page.textContent("#nodes")));
  assert.doesNotMatch(await page.textContent("#nodes"), /cookie|credentials/i, "no credential paths on the page");
  await page.screenshot({ path: `${shots}/nodes.png`, fullPage: true });

  log("system page");
  await page.goto(`${base}/#system`);
  await until("memory figures", async () => /of/.test(await page.textContent("#system")));
  await page.screenshot({ path: `${shots}/system.png`, fullPage: true });

  log("updates page follows a utxo snapshot install through every phase, then background validation");
  // The agent's answers (crates/daemons/snapshot-agent: service.rs list, progress.rs), served in
  // turn; the page must follow them by itself, without a reload.
  const agentSays = (phase, extra = {}) => ({ coins: [{ coin: "btc", network: "regtest", installable: true,
    available: { height: 200, bytes: 8_000_000, kind: "utxo", trust: "checked by Bitcoin Core against its own assumeutxo hash", created: 1, version: 1 },
    installed: phase === "done" ? { version: 1, height: 200, kind: "utxo", trust: "checked by Bitcoin Core" } : null,
    progress: { phase, bytes_total: 8_000_000, bytes_done: phase === "downloading" ? 2_000_000 : 8_000_000, bytes_reused: 0, bytes_received: 2_000_000,
      chunks_total: 4, chunks_downloaded: 1, rate_bytes_per_sec: 1e6, eta_secs: phase === "downloading" ? 6 : null, error: null, validation: null, load_secs: null, ...extra } }], busy: phase === "done" ? null : "btc" });
  let agent = agentSays("downloading");
  await page.route("**/api/v1/snapshots", (route) => route.fulfill({ json: agent }));
  await page.goto(`${base}/#updates`);
  const navs = await page.evaluate(() => window.performance.getEntriesByType("navigation").length);
  const phaseText = () => page.textContent('[data-testid="snapshot-phase-btc"]');
  await until("downloading shown", async () => /Downloading: 2\.0 MB of 8\.0 MB/.test(await phaseText()));
  agent = agentSays("loading");
  await until("loading the UTXO set shown", async () => /Loading the UTXO set/.test(await phaseText()), 30);
  agent = agentSays("done", { load_secs: 2.5, validation: { headers: 200, snapshot_tip: 201, background_height: 150, snapshot_height: 200, fully_validated: false } });
  await until("background validation shown", async () =>
    /block 150 of 200 .*height 201/.test(await page.textContent('[data-testid="snapshot-validation-btc"]')), 30);
  assert.match(await phaseText(), /Installed: height 200, UTXO set loaded in 3 s/);
  await page.screenshot({ path: `${shots}/snapshot-validating.png`, fullPage: true });
  agent = agentSays("done", { load_secs: 2.5, validation: { headers: 201, snapshot_tip: 201, background_height: null, snapshot_height: 200, fully_validated: true } });
  await until("background validation complete", async () =>
    /complete/.test(await page.textContent('[data-testid="snapshot-validation-btc"]')), 30);
  assert.equal(await page.evaluate(() => window.performance.getEntriesByType("navigation").length), navs, "no reload happened");
  await page.unroute("**/api/v1/snapshots");

  log("a setting round-trips: saved, on disk, shown after a reload");
  await page.goto(`${base}/#settings`);
  await page.waitForSelector('fieldset[data-coin="btc"]');
  await page.fill("#set-webhook", hookUrl);
  await page.fill('fieldset[data-coin="btc"] [name=max_difficulty]', "123456");
  await page.click("#settings-save");
  await until("saved", async () => /Saved/.test(await page.textContent("#settings-result")));
  const onDisk = fs.readFileSync(settingsFile, "utf8");
  assert.match(onDisk, new RegExp(hookUrl.replace(/[/.]/g, "\\$&")));
  assert.match(onDisk, /max_difficulty = 123456/);
  assert.match(onDisk, /Written by scripts\/run-local/, "the file's own comment is kept");
  await page.reload();
  await page.waitForSelector('fieldset[data-coin="btc"]');
  assert.equal(await page.inputValue("#set-webhook"), hookUrl);
  assert.equal(await page.inputValue('fieldset[data-coin="btc"] [name=max_difficulty]'), "123456");
  await page.screenshot({ path: `${shots}/settings.png`, fullPage: true });

  log("a wrong payout address is refused with the key named, and nothing is written");
  await page.fill('fieldset[data-coin="btc"] [name=payout_address]', "1BoatSLRHtKNngkdXEeobR76b53LETtpyT");
  await page.click("#settings-save");
  await until("the refusal", async () => /payout_address/.test(await page.textContent("#settings-result")));
  assert.equal(fs.readFileSync(settingsFile, "utf8"), onDisk, "settings file untouched");

  log("the pool picker: none by default; no mainnet pool offered on regtest, any URL still taken, saved and removed");
  await page.reload();
  const btcSet = page.locator('fieldset[data-coin="btc"]');
  await btcSet.waitFor();
  assert.equal(await btcSet.locator("[name=upstream]").inputValue(), "", "no pool by default");
  assert.doesNotMatch(onDisk, /upstream/);
  // The local stack mines btc on regtest: the well-known (mainnet) pools are not offered.
  assert.equal(await btcSet.locator('[data-testid="pools-btc"]').count(), 0, "no mainnet pool for regtest");
  assert.match(await btcSet.locator('[data-testid="pools-btc-none"]').textContent(), /No well-known solo pool is listed for Bitcoin regtest/);
  const poolUrl = "stratum+tcp://127.0.0.1:3999";
  await btcSet.locator("[name=upstream]").fill(poolUrl);
  await page.screenshot({ path: `${shots}/settings-pool.png`, fullPage: true });
  await page.click("#settings-save");
  await until("the pool saved", async () => fs.readFileSync(settingsFile, "utf8").includes(`upstream = "${poolUrl}"`));
  await page.reload();
  await btcSet.waitFor();
  assert.equal(await btcSet.locator("[name=upstream]").inputValue(), poolUrl, "shown after a reload");
  await btcSet.getByRole("button", { name: "No pool" }).click();
  await page.click("#settings-save");
  await until("the pool removed", async () => !/upstream/.test(fs.readFileSync(settingsFile, "utf8")));

  log("the MineBox Cloud card: no cloud set in the local stack, what telemetry sends, the switch");
  await until("the cloud card", async () => /No MineBox Cloud is set/.test(await page.textContent('[data-testid="cloud-message"]')));
  assert.ok(!(await page.isVisible('[data-testid="cloud-link"]')), "no Link button without a cloud");
  const cloudState = await (await page.request.get(`${base}/api/v1/cloud`)).json();
  assert.equal(await page.textContent('[data-testid="cloud-what"]'), cloudState.what_is_sent, "the exact text, verbatim");
  assert.match(cloudState.what_is_sent, /Nothing else/);
  assert.ok(!(await page.isChecked('[data-testid="cloud-telemetry"]')), "telemetry is off by default");
  await page.check('[data-testid="cloud-telemetry"]');
  await until("telemetry saved", async () => /\[cloud\][^[]*telemetry = true/.test(fs.readFileSync(settingsFile, "utf8")));
  await page.uncheck('[data-testid="cloud-telemetry"]');
  await until("telemetry off again", async () => /telemetry = false/.test(fs.readFileSync(settingsFile, "utf8")));
  await page.screenshot({ path: `${shots}/cloud.png`, fullPage: true });

  log("test notification and a real block-found notification reach the webhook");
  await page.click("#notify-test");
  await until("the test message", async () => hooks.some((h) => h.coin === "test"));
  await until("a block_found notification", async () => hooks.some((h) => h.event === "block_found" && h.coin === "btc"), 120);

  log("CSRF: a state change without the token, or from another origin, is refused");
  const noToken = await page.request.post(`${base}/api/v1/nodes/btc/stop`);
  assert.equal(noToken.status(), 403);
  const wrongToken = await page.request.put(`${base}/api/v1/config`, { headers: { "X-CSRF-Token": "0".repeat(64) }, data: {} });
  assert.equal(wrongToken.status(), 403);
  const foreign = await page.request.post(`${base}/api/v1/auth/login`, { headers: { Origin: "http://evil.example" }, data: { password: ADMIN } });
  assert.equal(foreign.status(), 403);
  const session = await (await page.request.get(`${base}/api/v1/auth/session`)).json();
  const withToken = await page.request.put(`${base}/api/v1/config`, { headers: { "X-CSRF-Token": session.csrf_token }, data: {} });
  assert.equal(withToken.status(), 200, "the page's own token works");

  log("users (issue 17): the admin adds a viewer on the page; the audit log shows it");
  await page.goto(`${base}/#settings`);
  await page.waitForSelector('[data-testid="user-admin"]');
  await page.fill("#user-name", "viewer");
  await page.selectOption("#user-role", "viewer");
  await page.fill("#user-password", VIEWER);
  await page.click('#user-add button[type="submit"]');
  await page.waitForSelector('[data-testid="user-viewer"]');
  await until("the audit entry", async () => /user created\s*viewer \(viewer\)/.test(await page.textContent("#audit-list")));
  await page.screenshot({ path: `${shots}/users.png`, fullPage: true });

  log("pool (issue 17): the admin registers a payout address and turns pool mode on; the history shows it");
  const owner = /payout_address\s*=\s*"([^"]+)"/.exec(fs.readFileSync(settingsFile, "utf8"))[1];
  await page.goto(`${base}/#pool`);
  await page.waitForSelector('[data-testid="pool-address-btc"]');
  await until("pool mode off", async () => /pool mode is off/.test(await page.textContent('[data-testid="pool-state-btc"]')));
  await page.fill('[data-testid="pool-address-btc"]', owner);
  await page.locator('[data-testid="pool-address-btc"]').press("Enter");
  await until("the address saved", async () => /saved \(payee \d+\)/.test(await page.textContent('[data-testid="pool-address-result-btc"]')));
  await page.check('[data-testid="pool-enabled-btc"]');
  await page.fill('[data-testid="pool-port-btc"]', "3340");
  await page.click('[data-testid="pool-config-save-btc"]');
  await until("the history row", async () => /1\s*.*admin\s*pool mode on: port 3340/.test(await page.textContent('[data-testid="pool-history-btc"]')));
  // The stratum server was not restarted (apply = [] here) and does not serve pool mode yet.
  await until("not running yet", async () => /pool mode not running/.test(await page.textContent('[data-testid="pool-state-btc"]')));
  await page.screenshot({ path: `${shots}/pool.png`, fullPage: true });

  log("a viewer login reads but cannot change");
  const vctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const vpage = await vctx.newPage();
  await vpage.goto(base);
  await vpage.fill("#auth-user", "viewer");
  await vpage.fill("#auth-password", VIEWER);
  await vpage.click("#auth-submit");
  await vpage.waitForSelector("#coin-btc");
  await until("phone overview numbers", async () => Number(await vpage.textContent('[data-testid="miners-btc"]')) >= 1);
  await vpage.screenshot({ path: `${shots}/overview-phone.png`, fullPage: true });
  await vpage.goto(`${base}/#settings`);
  await vpage.waitForSelector('fieldset[data-coin="btc"]');
  assert.ok(await vpage.isDisabled("#settings-save"), "viewer cannot save");
  await until("the viewer's cloud card", async () => (await vpage.textContent('[data-testid="cloud-what"]')).length > 0);
  assert.ok(await vpage.isDisabled('[data-testid="cloud-telemetry"]'), "viewer cannot switch telemetry");
  await until("the viewer's own session listed", async () => /this one/.test(await vpage.textContent("#sessions-list")));
  assert.ok(!(await vpage.isVisible('[data-testid="users"]')), "the viewer sees no user management");
  assert.ok(!(await vpage.isVisible('[data-testid="audit"]')), "nor the audit log");
  const vs = await (await vpage.request.get(`${base}/api/v1/auth/session`)).json();
  assert.equal(vs.role, "viewer");

  log("two-factor sign-in (issue 17): the viewer enrols with the QR code and a code computed here");
  await vpage.click('[data-testid="mfa-start"]');
  await until("the QR code drawn", async () => vpage.evaluate(() => {
    const img = document.querySelector('[data-testid="mfa-qr"]');
    return img.complete && img.naturalWidth > 0;
  }));
  const mfaSecret = (await vpage.textContent('[data-testid="mfa-secret"]')).trim();
  let mfaStep = Math.floor(Date.now() / 30000);
  await vpage.fill('[data-testid="mfa-confirm-code"]', totp(mfaSecret, mfaStep));
  await vpage.click('[data-testid="mfa-confirm"]');
  await until("ten recovery codes shown", async () => (await vpage.locator("#mfa-codes-list li").count()) === 10);
  await until("two-factor on", async () => /^On:/.test(await vpage.textContent('[data-testid="mfa-state"]')));
  await vpage.screenshot({ path: `${shots}/two-factor.png`, fullPage: true });
  await vpage.goto(`${base}/#miners`);
  await vpage.waitForSelector("#lan");
  assert.ok(!(await vpage.isVisible('[data-testid="lan-scan"]')), "the viewer has no Scan button");
  await vpage.waitForSelector(`[data-testid="shares-table-btc"] ${refusedRow}`);
  const vscan = await vpage.request.post(`${base}/api/v1/miners/scan`, { headers: { "X-CSRF-Token": vs.csrf_token }, data: {} });
  assert.equal(vscan.status(), 403, "nor may the viewer scan through the API");
  const vput = await vpage.request.put(`${base}/api/v1/config`, { headers: { "X-CSRF-Token": vs.csrf_token }, data: {} });
  assert.equal(vput.status(), 403);
  // Signing out is for every role (issue 12: the viewer got 403).
  await vpage.goto(`${base}/#overview`);
  await vpage.click("#logout");
  await vpage.waitForSelector("#auth:not([hidden])");
  assert.equal((await vpage.request.get(`${base}/api/v1/overview`)).status(), 401, "the viewer signed out for real");
  await vctx.close();

  log("the admin revokes a session left signed in elsewhere");
  const lctx = await browser.newContext();
  const lpage = await lctx.newPage();
  await lpage.goto(base);
  await lpage.fill("#auth-user", "viewer");
  await lpage.fill("#auth-password", VIEWER);
  await lpage.click("#auth-submit");
  // The viewer has two-factor sign-in now: the password alone asks for a code (a later step's:
  // each step's code is good once).
  await lpage.waitForSelector('[data-testid="mfa-step"]:not([hidden])');
  mfaStep = Math.max(mfaStep + 1, Math.floor(Date.now() / 30000));
  await lpage.fill('[data-testid="mfa-step-code"]', totp(mfaSecret, mfaStep));
  await lpage.click('[data-testid="mfa-step"] button[type="submit"]');
  await lpage.waitForSelector("#coin-btc");
  await page.goto(`${base}/#overview`);
  await page.goto(`${base}/#settings`);
  await until("the viewer's session in the admin's list", async () => /viewer/.test(await page.textContent("#sessions-list")));
  const row = page.locator("#sessions-list tr", { hasText: "viewer" }).first();
  await row.locator("button").click();
  await until("the revoked session refused", async () => (await lpage.request.get(`${base}/api/v1/overview`)).status() === 401);
  await lctx.close();

  log("the admin sees the viewer's two-factor on and removes it (a lost phone), after a confirm");
  await page.goto(`${base}/#overview`);
  await page.goto(`${base}/#settings`);
  await until("the viewer's two-factor on", async () => (await page.textContent('[data-testid="mfa-viewer"]')) === "on");
  assert.equal(await page.textContent('[data-testid="mfa-admin"]'), "off");
  assert.equal(await page.locator('[data-testid="remove-mfa-admin"]').count(), 0, "no button for a user without it");
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.accept(); });
  await page.click('[data-testid="remove-mfa-viewer"]');
  await until("the viewer's two-factor off", async () => (await page.textContent('[data-testid="mfa-viewer"]')) === "off");
  assert.match(asked, /Remove viewer's two-factor sign-in\?/);
  assert.equal(await page.locator('[data-testid="remove-mfa-viewer"]').count(), 0, "nothing left to remove");
  await until("the audit entry", async () => /two-factor removed\s*viewer's, by an admin/.test(await page.textContent("#audit-list")));
  const pctx = await browser.newContext();
  const alone = await pctx.request.post(`${base}/api/v1/auth/login`, { data: { user: "viewer", password: VIEWER } });
  assert.equal(alone.status(), 200, "the viewer signs in with the password alone");
  assert.ok(!(await alone.json()).mfa_required, "no code asked");
  await pctx.close();

  log("only the box's own names are served (DNS rebinding)");
  const rebound = await new Promise((resolve, reject) => {
    const u = new URL(`${base}/api/v1/health`);
    http.get({ host: u.hostname, port: u.port, path: u.pathname, headers: { Host: "rebind.example" } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    }).on("error", reject);
  });
  assert.equal(rebound.status, 421);
  assert.match(JSON.parse(rebound.body).error, /rebind\.example/);

  log("secrets never appear in responses");
  for (const path of ["/api/v1/nodes", "/api/v1/config", "/api/v1/overview", "/api/v1/stratum", "/metrics"]) {
    const text = await (await page.request.get(`${base}${path}`)).text();
    assert.doesNotMatch(text, /\$argon2|rpcpassword|credentials_file|\.cookie/, `${path} leaks a secret`);
  }
  const metrics = await (await page.request.get(`${base}/metrics`)).text();
  assert.match(metrics, /minebox_blocks_found_total\{coin="btc"\} [1-9]/);
  // Open to anyone on the LAN, so aggregates only: no payout address, no worker name.
  const payout = /payout_address\s*=\s*"([^"]+)"/.exec(fs.readFileSync(settingsFile, "utf8"));
  if (payout) assert.ok(!metrics.includes(payout[1]), "/metrics names the payout address");
  assert.doesNotMatch(metrics, /worker=|sim1/, "/metrics names workers");

  log("sign out, then the login throttle");
  await page.goto(`${base}/#overview`);
  await page.click("#logout");
  await page.waitForSelector("#auth:not([hidden])");
  assert.equal((await page.request.get(`${base}/api/v1/overview`)).status(), 401, "signed out for real");
  for (let i = 0; i < 5; i++) {
    await page.fill("#auth-password", `wrong password ${i}`);
    await page.click("#auth-submit");
    await until(`refusal ${i}`, async () => /wrong user name or password|too many/.test(await page.textContent("#auth-error")));
    await page.evaluate(() => (document.getElementById("auth-error").textContent = ""));
  }
  await page.fill("#auth-password", ADMIN);
  await page.click("#auth-submit");
  await until("the lockout", async () => /too many wrong passwords/.test(await page.textContent("#auth-error")));
  assert.deepEqual(consoleErrors.filter((e) => !/401|403|429|Failed to load resource/.test(e)), [], "no script errors");
  console.log(`e2e: PASS in ${((Date.now() - t0) / 1000).toFixed(0)} s; screenshots in ${shots}`);
} catch (e) {
  console.error(`e2e: FAIL at "${step}": ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  hookServer.close();
}
