// The MineBox status page. Plain DOM, no framework, nothing fetched from the internet.
// Everything shown that came from a miner (worker names, user agents) goes in as text,
// never as HTML: a hostile miner must not be able to script the owner's browser.
"use strict";

// Each role may do what the ones before it may (the API's own order, crate::accounts::Role).
const RANK = { viewer: 0, operator: 1, admin: 2 };
const can = (role) => !!state.session && RANK[state.session.role] >= RANK[role];

const state = { session: null, overview: null, config: null, page: "overview", worker: null, events: null };

// ---- formatting -------------------------------------------------------------------------
const SI = ["", "k", "M", "G", "T", "P", "E"];
function si(v, unit = "", digits = 2) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  let i = 0;
  while (Math.abs(v) >= 1000 && i < SI.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(v >= 100 || i === 0 && Number.isInteger(v) ? 0 : digits)} ${SI[i]}${unit}`.trim();
}
const hashrate = (v) => si(v, "H/s");
function difficulty(v) {
  if (!v) return "0";
  return v < 1 ? v.toPrecision(3) : si(v);
}
function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 1) return "under a second";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  if (s < 63072000) return `${Math.round(s / 86400)} days`;
  return `${si(s / 31557600, "", 1)} years`;
}
function ago(unix) {
  if (!unix) return "never";
  return `${duration(Date.now() / 1000 - unix)} ago`;
}
const bytes = (b) => si(b, "B", 1);
const pct = (x) => `${(x * 100).toFixed(x > 0.999 && x < 1 ? 2 : 1)} %`;
const coins = (sats) => (sats / 1e8).toFixed(8);

// ---- DOM ------------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 6000);
}

// ---- API ------------------------------------------------------------------------------------
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.session && state.session.csrf_token) opts.headers["X-CSRF-Token"] = state.session.csrf_token;
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty answer */ }
  if (r.status === 401 && !path.startsWith("/api/v1/auth/")) { showAuth(); throw new Error("sign in first"); }
  if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  return data;
}

// ---- charts -------------------------------------------------------------------------------
// A line chart of [unix, value] points: an SVG stretched to its box (so it fills a phone
// or a desktop alike) with the labels in HTML, where they keep their size.
function chart(points, label) {
  const W = 600, H = 160;
  const box = h("div", { class: "chart-box", role: "img", "aria-label": label });
  if (!points || points.length < 2) {
    box.append(h("p", { class: "chart-empty" }, "collecting data…"));
    return box;
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const max = Math.max(...points.map((p) => p[1])) || 1;
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * W;
  const y = (v) => H - 2 - (v / max) * (H - 4);
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  const area = document.createElementNS(ns, "path");
  area.setAttribute("d", `${d}L${W},${H}L0,${H}Z`);
  area.setAttribute("class", "chart-area");
  const line = document.createElementNS(ns, "path");
  line.setAttribute("d", d);
  line.setAttribute("class", "chart-line");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(area, line);
  box.append(h("div", { class: "chart-top" }, hashrate(max)), svg,
    h("div", { class: "chart-bottom" }, `${new Date(t0 * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} – now (${duration(t1 - t0)})`));
  return box;
}

// ---- sign-in --------------------------------------------------------------------------------
function showAuth() {
  const setup = state.session && state.session.setup_required;
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("auth").hidden = false;
  $("auth-form").hidden = false;
  $("mfa-step").hidden = true;
  $("auth-title").textContent = setup ? "Welcome to your MineBox" : "Sign in";
  $("auth-help").textContent = setup
    ? "Choose the first admin's name and password for this box (at least 8 characters). There is no default password."
    : "Enter your user name and password. (A box set up before users existed has users admin and viewer.)";
  $("auth-confirm-row").hidden = !setup;
  $("auth-password").autocomplete = setup ? "new-password" : "current-password";
  $("auth-submit").textContent = setup ? "Set password" : "Sign in";
  $("auth-password").focus();
}

async function submitAuth(ev) {
  ev.preventDefault();
  $("auth-error").textContent = "";
  const password = $("auth-password").value;
  const user = $("auth-user").value.trim();
  const setup = state.session && state.session.setup_required;
  if (setup && password !== $("auth-confirm").value) {
    $("auth-error").textContent = "The two passwords differ.";
    return;
  }
  try {
    const s = await api("POST", setup ? "/api/v1/auth/setup" : "/api/v1/auth/login", { user, password });
    $("auth-password").value = "";
    $("auth-confirm").value = "";
    if (s.mfa_required) { showCodeStep(s.mfa_ticket); return; }
    // The session as the box sees it: an admin may have to set up two-factor sign-in first.
    state.session = await api("GET", "/api/v1/auth/session");
    start();
  } catch (e) {
    $("auth-error").textContent = e.message;
  }
}

// ---- two-factor sign-in (issue 17) ----------------------------------------------------------
// The password was right: the box gave a ticket, not a session, and waits for a code.
function showCodeStep(ticket) {
  state.mfaTicket = ticket;
  $("auth-form").hidden = true;
  $("mfa-step").hidden = false;
  $("mfa-step-error").textContent = "";
  $("mfa-step-code").value = "";
  $("mfa-step-code").focus();
}

async function submitCode(ev) {
  ev.preventDefault();
  try {
    await api("POST", "/api/v1/auth/login/mfa", { mfa_ticket: state.mfaTicket, code: $("mfa-step-code").value.trim() });
    state.mfaTicket = null;
    state.session = await api("GET", "/api/v1/auth/session");
    start();
  } catch (e) {
    $("mfa-step-error").textContent = e.message;
  }
}

function showCodes(codes) {
  $("mfa-codes-list").replaceChildren(...codes.map((c) => h("li", {}, c)));
  $("mfa-codes").hidden = false;
}

async function renderMfa() {
  const st = await api("GET", "/api/v1/auth/mfa");
  $("mfa-state").textContent = st.active
    ? `On: you sign in with your password and a code. ${st.recovery_codes_left} recovery codes left.`
    : st.must_enrol
      ? "This box requires two-factor sign-in for every admin: set yours up to use the page."
      : st.enrolling ? "Waiting for the first code from your app (or start again for a new key)." : "Off: your password alone signs you in.";
  $("mfa-state").className = st.must_enrol ? "error" : "";
  $("mfa-start").hidden = st.active;
  $("mfa-start").textContent = st.enrolling ? "Start again" : "Set up two-factor sign-in";
  $("mfa-manage").hidden = !st.active;
  if (st.active) $("mfa-enrol").hidden = true;
  $("mfa-require").checked = !!st.required_for_admins;
  $("mfa-require").disabled = state.session.role !== "admin";
}

async function mfaAction(fn) {
  $("mfa-result").textContent = "";
  try { await fn(); } catch (e) { $("mfa-result").textContent = e.message; }
  await renderMfa().catch((e) => toast(e.message));
}

function bindMfa() {
  $("mfa-step").addEventListener("submit", submitCode);
  $("mfa-step-back").addEventListener("click", () => { state.mfaTicket = null; showAuth(); });
  $("mfa-start").addEventListener("click", () => mfaAction(async () => {
    const e = await api("POST", "/api/v1/auth/mfa/enrol");
    // The QR code is an SVG the box draws (same origin, no data: URL, nothing built from data here).
    $("mfa-qr").src = `${e.qr}?${Date.now()}`;
    $("mfa-secret").textContent = e.secret;
    $("mfa-codes").hidden = true;
    $("mfa-enrol").hidden = false;
    $("mfa-confirm-code").focus();
  }));
  $("mfa-confirm-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    mfaAction(async () => {
      const r = await api("POST", "/api/v1/auth/mfa/confirm", { code: $("mfa-confirm-code").value.trim() });
      $("mfa-confirm-code").value = "";
      showCodes(r.recovery_codes);
      if (state.session.mfa_must_enrol) {
        // Set up: the rest of the page opens (the codes stay on screen).
        state.session.mfa_must_enrol = false;
        document.body.classList.remove("must-enrol");
        $("nav").hidden = false;
        connectEvents();
      }
      toast("Two-factor sign-in is on.");
    });
  });
  $("mfa-regenerate").addEventListener("click", () => mfaAction(async () => {
    const r = await api("POST", "/api/v1/auth/mfa/recovery-codes", { code: $("mfa-manage-code").value.trim() });
    $("mfa-manage-code").value = "";
    showCodes(r.recovery_codes);
  }));
  $("mfa-disable").addEventListener("click", () => mfaAction(async () => {
    await api("POST", "/api/v1/auth/mfa/disable", { password: $("mfa-manage-password").value, code: $("mfa-manage-code").value.trim() });
    $("mfa-manage-code").value = ""; $("mfa-manage-password").value = "";
    $("mfa-codes").hidden = true;
    toast("Two-factor sign-in is off.");
  }));
  $("mfa-require").addEventListener("change", () => mfaAction(async () => {
    const on = $("mfa-require").checked;
    await api("PUT", "/api/v1/mfa/policy", { require_for_admins: on });
    toast(on ? "Every admin now signs in with a second factor." : "Admins may sign in with their password alone.");
  }));
}

// ---- pages ----------------------------------------------------------------------------------
function renderOverview(o) {
  state.overview = o;
  const host = location.hostname || "minebox.local";
  const root = $("coins");
  root.replaceChildren();
  if (!o.coins.length) {
    root.append(h("div", { class: "card" }, h("h2", {}, "No coin is mining yet"),
      h("p", {}, "Open ", h("a", { href: "#settings" }, "Settings"), ", enter your payout address and switch a coin on.")));
  }
  for (const c of o.coins) {
    const n = c.node;
    const syncing = n.progress !== null && n.progress < 0.9999;
    root.append(h("div", { class: "card coin", id: `coin-${c.coin}` },
      h("h2", {}, `${c.name} `, h("span", { class: "muted" }, c.network)),
      h("div", { class: "node-line" },
        h("span", { class: `badge state-${n.state}`, "data-testid": `node-state-${c.coin}` }, n.state),
        " ", n.detail,
        n.progress !== null ? h("div", { class: "sync" },
          h("progress", { max: 1, value: n.progress, "data-testid": `sync-${c.coin}` }),
          ` ${pct(n.progress)}`, syncing && n.eta_secs ? ` · about ${duration(n.eta_secs)} left` : "") : null),
      miningSource(c),
      h("div", { class: "stats" },
        stat("Hashrate (1 m)", hashrate(c.hashrate["1m"]), `hashrate-${c.coin}`),
        stat("Hashrate (1 h)", hashrate(c.hashrate["1h"])),
        stat("Miners", c.miners, `miners-${c.coin}`),
        stat("Best share (all time)", difficulty(c.best_share_all_time), `best-${c.coin}`),
        stat("Best share (connected miners)", difficulty(c.best_share_session)),
        stat("Blocks found", c.blocks_found, `blocks-${c.coin}`),
        stat("Expected time to a block", duration(c.odds.expected_secs), `odds-${c.coin}`),
        stat("Chance of a block today", c.odds.chance_per_day ? pct(c.odds.chance_per_day) : "–"),
        stat("Network difficulty", difficulty(c.odds.network_difficulty))),
      h("details", { class: "bitaxe", open: c.miners === 0 },
        h("summary", {}, "Point a Bitaxe here"),
        h("dl", { class: "facts" },
          h("dt", {}, "Stratum URL"), h("dd", { "data-testid": `stratum-url-${c.coin}` }, h("code", {}, host)),
          h("dt", {}, "Port"), h("dd", {}, h("code", {}, c.stratum.port)),
          h("dt", {}, "User"), h("dd", {}, h("code", {}, c.stratum.user), h("span", { class: "muted" }, " (anything after the dot names the miner)")),
          h("dt", {}, "Password"), h("dd", {}, h("code", {}, "x")),
          h("dt", {}, "Full URL"), h("dd", {}, h("code", {}, `stratum+tcp://${host}:${c.stratum.port}`)))),
      h("div", { class: "chart", id: `chart-${c.coin}` })));
    loadChart(c.coin, null, $(`chart-${c.coin}`), `${c.name} pool hashrate, 24 h`);
  }
  const s = o.system;
  $("system-summary").replaceChildren(...facts([
    ["CPU temperature", s.cpu_temperature_c !== null ? `${s.cpu_temperature_c.toFixed(1)} °C` : "–"],
    ["Load", s.load.map((l) => l.toFixed(2)).join(" ")],
    ["Memory free", `${bytes(s.memory_available_bytes)} of ${bytes(s.memory_total_bytes)}`],
    ["Disk free", `${bytes(s.disk_free_bytes)} of ${bytes(s.disk_total_bytes)}`],
    ["Up", duration(s.uptime_secs)],
  ]));
  const banner = [...o.problems];
  if (o.restart_required) banner.push("Settings were saved; restart the box's services for them to take effect.");
  $("banner").textContent = banner.join(" · ");
  $("banner").hidden = banner.length === 0;
}

// Where the coin mines now (the server words it from the stratum server's pool state and
// the sync estimate) and its blocks and shares by source.
function miningSource(c) {
  const m = c.mining;
  if (!m) return null;
  const p = m.through_pool;
  return h("div", { class: `mining mining-${m.source}` },
    h("div", { "data-testid": `mining-${c.coin}` }, m.words),
    h("div", { class: "muted small", "data-testid": `mining-counts-${c.coin}` },
      `Own node: ${m.own_node_shares} shares accepted, ${m.own_node_blocks} block${m.own_node_blocks === 1 ? "" : "s"} found`,
      p ? ` · Through the pool: ${p.forwarded} shares sent, ${p.accepted} accepted, ${p.rejected} rejected, ${p.blocks} block${p.blocks === 1 ? "" : "s"} found` : ""));
}

function stat(label, value, testid) {
  return h("div", { class: "stat" }, h("div", { class: "stat-value", "data-testid": testid }, value), h("div", { class: "stat-label" }, label));
}
function facts(rows) {
  return rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
}

const chartCache = new Map();
async function loadChart(coin, worker, el, label) {
  const key = `${coin}/${worker || ""}`;
  const cached = chartCache.get(key);
  if (cached && Date.now() - cached.at < 60000) { el.replaceChildren(chart(cached.points, label)); return; }
  try {
    const q = new URLSearchParams({ coin });
    if (worker) q.set("worker", worker);
    const points = await api("GET", `/api/v1/hashrate?${q}`);
    if (points.length >= 2) chartCache.set(key, { at: Date.now(), points });
    el.replaceChildren(chart(points, label));
  } catch (e) {
    el.replaceChildren(h("p", { class: "muted" }, `chart unavailable: ${e.message}`));
  }
}

// The worker registry can hold thousands (one per name a miner ever used): the page reads
// one page at a time, most recently seen first.
const WORKERS_PAGE = 200;
// Whose address this worker's blocks pay (unknown for a worker seen only before a restart).
function paysText(w) {
  if (w.paid_to === "owner") return ` · pays this box's address ${w.payout_address}`;
  if (w.paid_to === "miner") return ` · pays its own address ${w.payout_address}`;
  return "";
}

async function renderMiners() {
  const offset = state.workersOffset || 0;
  const [workers, miners] = await Promise.all([
    api("GET", `/api/v1/workers?limit=${WORKERS_PAGE}&offset=${offset}`), api("GET", "/api/v1/miners")]);
  const agents = new Map();
  for (const m of miners) for (const w of m.workers) agents.set(`${m.coin}/${w}`, m.user_agent);
  const body = $("workers").tBodies[0];
  body.replaceChildren(...workers.map((w) => {
    const rej = Object.entries(w.rejected || {}).map(([k, v]) => `${v} ${k}`).join(", ") || "0";
    return h("tr", { class: w.connections ? "" : "offline", onclick: () => selectWorker(w) },
      h("td", {}, h("a", { href: "#miners" }, w.worker.split(".").slice(1).join(".") || w.worker), h("div", { class: "muted small" }, w.coin, paysText(w))),
      h("td", {}, `${hashrate(w.hashrate["1m"])} / ${hashrate(w.hashrate["1h"])} / ${hashrate(w.hashrate["24h"])}`),
      h("td", {}, w.accepted), h("td", {}, rej), h("td", {}, difficulty(w.best_share)),
      h("td", {}, difficulty(w.difficulty)), h("td", {}, ago(w.last_share_at)),
      h("td", {}, agents.get(`${w.coin}/${w.worker}`) || w.user_agent || "–"));
  }));
  if (!workers.length && !offset) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No miner has connected yet.")));
  if (offset || workers.length === WORKERS_PAGE) {
    const page = (to) => () => { state.workersOffset = Math.max(0, to); state.worker = null; renderMiners(); };
    const cell = h("td", { colspan: 8, class: "muted", "data-testid": "workers-pager" },
      `Workers ${offset + 1}–${offset + workers.length}, most recently seen first. `);
    if (offset) cell.append(h("button", { type: "button", onclick: page(offset - WORKERS_PAGE) }, "Newer"));
    if (workers.length === WORKERS_PAGE) cell.append(h("button", { type: "button", onclick: page(offset + WORKERS_PAGE) }, "Older"));
    body.append(h("tr", {}, cell));
  }
  api("GET", "/api/v1/miners/found").then(showLan).catch((e) => { $("lan-status").textContent = e.message; });
  if (!state.worker && workers.length) state.worker = workers[0];
  if (state.worker) selectWorker(state.worker);
  renderShareHistory().catch((e) => $("share-history-coins").replaceChildren(h("p", { class: "error" }, e.message)));
}

// Share history (issue 17, retention): per enabled coin, bars of accepted shares and, on a
// scale of their own (refusals are few beside them), of refused ones per hour and per day,
// and a table of the refusals by reason. Inline SVG drawn here: no library, nothing inline
// for the CSP to refuse (the colours are classes in style.css).
async function renderShareHistory() {
  const ov = state.overview || await api("GET", "/api/v1/overview");
  const all = await Promise.all(ov.coins.map((c) => api("GET", `/api/v1/shares?coin=${encodeURIComponent(c.coin)}`)));
  const sum = (rows) => rows.reduce((t, r) => {
    t.accepted += r.accepted;
    for (const [k, v] of Object.entries(r.rejected)) t.rejected[k] = (t.rejected[k] || 0) + v;
    return t;
  }, { accepted: 0, rejected: {} });
  const refused = (r) => Object.values(r.rejected).reduce((a, b) => a + b, 0);
  const reasonsText = (r) => Object.entries(r.rejected).map(([k, v]) => `${v} ${k.replace("_", " ")}`).join(", ");
  $("share-history-coins").replaceChildren(...all.map((hist) => {
    const hours = sum(hist.hours), days = sum(hist.days);
    const reasons = [...new Set([...Object.keys(hours.rejected), ...Object.keys(days.rejected)])].sort();
    const label = (r, daily) => daily ? new Date(r.start * 1000).toLocaleDateString([], { timeZone: "UTC", month: "short", day: "numeric" })
      : new Date(r.start * 1000).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
    return h("div", { "data-testid": `shares-${hist.coin}` },
      ov.coins.length > 1 ? h("h3", {}, hist.coin) : null,
      h("div", { class: "chart-top" }, "Last 48 hours, hourly"), shareBars(hist.hours, (r) => label(r, false), refused, reasonsText),
      h("div", { class: "chart-top" }, "Last 30 days, daily (UTC)"), shareBars(hist.days, (r) => label(r, true), refused, reasonsText),
      h("div", { class: "scroll" }, h("table", { class: "share-table", "data-testid": `shares-table-${hist.coin}` },
        h("thead", {}, h("tr", {}, h("th", {}, "Shares"), h("th", {}, "48 hours"), h("th", {}, "30 days"))),
        h("tbody", {},
          h("tr", {}, h("td", {}, "accepted"), h("td", {}, hours.accepted), h("td", {}, days.accepted)),
          ...reasons.map((k) => h("tr", { class: "refused", "data-testid": `shares-refused-${hist.coin}-${k}` },
            h("td", {}, `refused: ${k.replace("_", " ")}`), h("td", {}, hours.rejected[k] || 0), h("td", {}, days.rejected[k] || 0))),
          reasons.length ? null : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No share was refused."))))),
      hist.complete ? null : h("p", { class: "muted small" }, "More workers than the page reads: the newest hours are missing."));
  }));
}

// Two rows of bars, one per hour or day: accepted on top, refused below, each to its own scale.
function shareBars(rows, label, refused, reasonsText) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 600, TOP = 70, GAP = 4, LOW = 26;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${TOP + GAP + LOW}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "share-bars");
  const maxA = Math.max(1, ...rows.map((r) => r.accepted));
  const maxR = Math.max(1, ...rows.map(refused));
  const w = W / rows.length;
  rows.forEach((r, i) => {
    const n = refused(r);
    const bar = (cls, y, height) => {
      const rect = document.createElementNS(ns, "rect");
      for (const [k, v] of Object.entries({ x: (i * w + w * 0.1).toFixed(1), y: y.toFixed(1), width: (w * 0.8).toFixed(1), height: height.toFixed(1), class: cls })) rect.setAttribute(k, v);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${label(r)}: ${r.accepted} accepted${n ? `; refused ${reasonsText(r)}` : ""}`;
      rect.append(title);
      svg.append(rect);
    };
    // A full-height hit area first, so an empty hour still tells its numbers on hover.
    bar("share-slot", 0, TOP + GAP + LOW);
    if (r.accepted) bar("share-accepted", TOP - (r.accepted / maxA) * TOP, (r.accepted / maxA) * TOP);
    if (n) bar("share-refused", TOP + GAP, (n / maxR) * LOW);
  });
  return h("div", { class: "chart-box", role: "img", "aria-label": `shares: at most ${maxA} accepted and ${rows.some((r) => refused(r)) ? maxR : 0} refused in one bar` },
    svg, h("div", { class: "chart-bottom" }, `${label(rows[0])} – ${label(rows[rows.length - 1])}; accepted up to ${maxA}, refused up to ${rows.some((r) => refused(r)) ? maxR : 0}`));
}
// Miners on the LAN: what the last scan (started by the admin) found, and "Mine on this box".
const poolText = (p) => p ? `${p.url}:${p.port}` : "–";
// Which coin "Mine on this box" points a miner at: offered only when the box mines more than
// one (each has its own stratum port and payout address); the first is the default.
function renderLanCoins(coins) {
  const sel = $("lan-coin");
  const keep = sel.value;
  sel.replaceChildren(...coins.map((c) => h("option", { value: c.id, selected: c.id === keep },
    `${c.name} (${c.network}), port ${c.stratum_port}`)));
  $("lan-coin-label").hidden = coins.length < 2;
}
function renderLan(report) {
  const runs = can("operator"); // operators run miners, nodes, snapshots and updates
  const body = $("lan-miners").tBodies[0];
  if (!report) {
    $("lan-status").textContent = runs ? "Not scanned yet." : "Not scanned yet (an operator or admin can scan).";
    body.replaceChildren();
    return;
  }
  const miners = report.found.filter((f) => f.miner).length;
  const when = new Date(report.finished_at * 1000).toLocaleString();
  $("lan-status").textContent = `${miners} miner${miners === 1 ? "" : "s"} among ${report.addresses_asked} addresses of ${report.networks.join(", ") || "–"}; scanned ${when} (${ago(report.finished_at)}).`;
  body.replaceChildren(...report.found.map((f) => {
    const m = f.miner;
    if (!m) return h("tr", { class: "offline" }, h("td", {}, f.ip), h("td", { colspan: 5, class: "error small" }, f.error));
    const here = m.pool.url === f.via;
    return h("tr", { "data-testid": `lan-${f.ip}` },
      h("td", {}, m.hostname || f.ip, h("div", { class: "muted small" }, f.ip, m.firmware ? ` · ${m.firmware}` : "")),
      h("td", {}, m.model), h("td", {}, hashrate(m.hashrate_ghs * 1e9)),
      h("td", {}, m.temperature_c === null ? "–" : `${m.temperature_c.toFixed(1)} °C`),
      h("td", {}, poolText(m.pool), h("div", { class: "muted small" }, m.pool.user,
        m.using_fallback ? " · on its fallback now" : "", m.fallback ? ` · fallback ${poolText(m.fallback)}` : "")),
      h("td", {}, runs ? h("button", { type: "button", class: here ? "secondary" : "", "data-testid": `lan-point-${f.ip}`,
        onclick: async (ev) => {
          const name = m.hostname || f.ip;
          const sel = $("lan-coin");
          const coin = $("lan-coin-label").hidden ? "" : sel.value;
          const what = coin ? ` to mine ${sel.selectedOptions[0].textContent}` : "";
          if (!confirm(`Point ${name} at this box${what}? Its pool ${poolText(m.pool)} becomes its fallback, and it restarts.`)) return;
          ev.target.disabled = true;
          try {
            const r = await api("POST", `/api/v1/miners/${f.ip}/point-here`, coin ? { coin } : undefined);
            toast(`${name} now mines on ${poolText(r.pool)} as ${r.pool.user}; fallback ${poolText(r.fallback)}. It is restarting.`);
          } catch (e) { toast(e.message); ev.target.disabled = false; }
        } }, here ? "Mine on this box again" : "Mine on this box") : null));
  }));
  if (!report.found.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No AxeOS miner answered.")));
}
// The scan runs on the box in the background: the page shows its progress and asks again
// each second until it is done (also after a reload while one runs).
function showLan(f) {
  renderLanCoins(f.coins);
  clearTimeout(showLan.timer);
  const scan = f.scan;
  if (scan && scan.state === "running") {
    renderLan(f.last_scan);
    $("lan-scan").disabled = true;
    $("lan-status").textContent = `Scanning the box's network: ${scan.asked} of ${scan.addresses} addresses asked…`;
    if (state.page === "miners") showLan.timer = setTimeout(() => api("GET", "/api/v1/miners/found").then(showLan).catch((e) => { $("lan-status").textContent = e.message; $("lan-scan").disabled = false; }), 1000);
    return;
  }
  $("lan-scan").disabled = false;
  renderLan(f.last_scan);
}
async function scanLan() {
  $("lan-scan").disabled = true;
  try {
    await api("POST", "/api/v1/miners/scan");
    showLan(await api("GET", "/api/v1/miners/found"));
  } catch (e) { $("lan-status").textContent = e.message; $("lan-scan").disabled = false; }
}

function selectWorker(w) {
  state.worker = w;
  $("worker-chart-title").textContent = `${w.worker}: hashrate, 24 h`;
  loadChart(w.coin, w.worker, $("worker-chart"), `${w.worker} hashrate`);
}

async function renderBlocks() {
  const blocks = await api("GET", "/api/v1/blocks?limit=200");
  $("blocks").tBodies[0].replaceChildren(...blocks.map((b) => h("tr", {},
    h("td", {}, b.coin), h("td", {}, b.height), h("td", { class: "hash" }, h("code", {}, b.hash)),
    h("td", {}, coins(b.reward_sats)),
    // A pool-port block: the pool configuration its job was built under (absent on the solo port).
    h("td", {}, b.worker, b.pool_config_version != null ? h("div", { class: "muted small" }, `pool config v${b.pool_config_version}`) : null),
    h("td", {}, ago(b.found_at)),
    h("td", {}, h("span", { class: `badge block-${b.status}` },
      b.status === "accepted" || b.status === "confirmed" ? `${b.status} · ${b.confirmations} conf.` : b.status),
      b.detail ? h("div", { class: "muted small" }, b.detail) : null))));
  $("blocks-empty").hidden = blocks.length > 0;
}

async function renderNodes() {
  const nodes = await api("GET", "/api/v1/nodes");
  const runs = can("operator"); // operators run miners, nodes, snapshots and updates
  $("nodes").replaceChildren(...nodes.map((n) => {
    const hl = n.health || {};
    const running = !["stopped", "crashed", "disk_full"].includes(n.state);
    return h("div", { class: "card" },
      h("h2", {}, `${n.coin.toUpperCase()} `, h("span", { class: "muted" }, `${n.network} · ${n.flavour}`)),
      h("p", {}, h("span", { class: `badge state-${n.state}` }, n.state), " ", n.detail),
      h("dl", { class: "facts" }, ...facts([
        ["Version", hl.version || "–"],
        ["Height / headers", hl.blocks !== undefined ? `${hl.blocks} / ${hl.headers}` : "–"],
        ["Sync", hl.verification_progress !== undefined ? pct(hl.verification_progress) : "–"],
        ["Peers", hl.peers ?? "–"],
        ["Mempool", hl.mempool_transactions !== undefined ? `${hl.mempool_transactions} tx, ${bytes(hl.mempool_bytes)}` : "–"],
        ["Disk use", hl.disk_bytes !== undefined ? bytes(hl.disk_bytes) : "–"],
        ["Pruned", hl.pruned === undefined ? "–" : hl.pruned ? "yes" : "no"],
        ["Restarts", n.restarts],
      ])),
      runs ? h("button", { class: running ? "secondary" : "", "data-testid": `node-${running ? "stop" : "start"}-${n.coin}`,
        onclick: async (ev) => {
          ev.target.disabled = true;
          try { await api("POST", `/api/v1/nodes/${n.coin}/${running ? "stop" : "start"}`); toast(`${n.coin}: ${running ? "stopping" : "starting"}`); }
          catch (e) { toast(e.message); }
          setTimeout(renderNodes, 1000);
        } }, running ? "Stop node" : "Start node") : null);
  }));
}

// A snapshot install, phase by phase, in words (the agent's progress.rs phases).
const SNAPSHOT_PHASES = {
  verifying: "Checking the signature and the index",
  reusing: "Reusing data already on the disk",
  downloading: "Downloading",
  syncing: "Writing to the disk",
  swapping: "Putting the new data in place",
  loading: "Loading the UTXO set into the node (loadtxoutset); the node keeps running on its own chain meanwhile",
  done: "Installed",
  failed: "Failed",
};
const SNAPSHOT_BUSY = ["verifying", "reusing", "downloading", "syncing", "swapping", "loading"];

function snapshotProgress(c) {
  const p = c.progress || {};
  const v = p.validation;
  const parts = [];
  if (p.phase && p.phase !== "idle") {
    const words = SNAPSHOT_PHASES[p.phase] || p.phase;
    let line = words;
    if (["downloading", "reusing", "syncing"].includes(p.phase)) {
      line += `: ${bytes(p.bytes_done)} of ${bytes(p.bytes_total)}${p.eta_secs ? ` · ${duration(p.eta_secs)} left` : ""}`;
    } else if (p.phase === "done" && c.installed) {
      line += `: height ${c.installed.height}${p.load_secs ? `, UTXO set loaded in ${duration(p.load_secs)}` : ""}`;
    }
    parts.push(h("div", {},
      p.phase === "loading" ? h("progress", {}) : h("progress", { max: p.bytes_total || 1, value: p.phase === "done" ? (p.bytes_total || 1) : p.bytes_done }),
      " ", h("span", { "data-testid": `snapshot-phase-${c.coin}` }, line)));
    if (p.error) parts.push(h("p", { class: "error" }, p.error));
  }
  if (v) {
    // Core's getchainstates: mining runs on the snapshot chainstate at once; the node checks
    // the blocks below the snapshot in the background.
    const target = v.snapshot_height ?? (c.installed ? c.installed.height : null);
    const text = v.fully_validated
      ? "Background validation complete: the node has checked every block from genesis to the snapshot."
      : `Background validation: block ${v.background_height ?? "–"} of ${target ?? "–"}` +
        `${v.background_height !== null && v.background_height !== undefined && target ? ` (${pct(v.background_height / target)})` : ""}` +
        ` · the node is at height ${v.snapshot_tip ?? "–"} and mines meanwhile`;
    parts.push(h("div", {},
      v.fully_validated ? null : h("progress", { max: target || 1, value: v.background_height || 0 }),
      " ", h("span", { "data-testid": `snapshot-validation-${c.coin}` }, text)));
  }
  return parts;
}

// While an install runs or the node validates in the background, the section follows it.
function snapshotsActive(s) {
  return (s.coins || []).some((c) => c.progress && (SNAPSHOT_BUSY.includes(c.progress.phase) ||
    (c.progress.validation && !c.progress.validation.fully_validated)));
}

async function renderSnapshots() {
  clearTimeout(renderSnapshots.timer);
  const runs = can("operator"); // operators run miners, nodes, snapshots and updates
  const snap = $("snapshots");
  try {
    const s = await api("GET", "/api/v1/snapshots");
    snap.replaceChildren(...(s.coins || []).map((c) => h("div", { class: "snapshot" },
      h("h2", {}, c.coin.toUpperCase()),
      c.available ? h("p", {}, `Available: height ${c.available.height}, ${bytes(c.available.bytes)}, `,
        h("strong", {}, c.available.trust)) : h("p", { class: "muted" }, c.error || "no snapshot published for this coin"),
      ...snapshotProgress(c),
      c.available && c.installable === false ? h("p", { class: "muted" }, "The node is external: install snapshots on its own host.") : null,
      runs && c.available && c.installable !== false ? h("button", { onclick: async () => {
        try { await api("POST", `/api/v1/snapshots/${c.coin}/install`); toast("snapshot download started"); renderSnapshots(); } catch (e) { toast(e.message); }
      } }, "Download and install") : null)));
    if (snapshotsActive(s) && state.page === "updates") renderSnapshots.timer = setTimeout(renderSnapshots, 3000);
  } catch (e) {
    snap.replaceChildren(h("p", { class: "muted" }, e.message));
  }
}

async function renderUpdates() {
  const runs = can("operator"); // operators run miners, nodes, snapshots and updates
  const upd = $("updates");
  await renderSnapshots();
  try {
    const [u, hist] = await Promise.all([api("GET", "/api/v1/updates"), api("GET", "/api/v1/updates/history")]);
    const p = u.progress;
    upd.replaceChildren(
      h("dl", { class: "facts" }, ...facts([
        ["Running", `${u.current.version} (slot ${u.current.slot}${u.current.trial ? ", on trial" : ""})`],
        ["State", u.state],
        ["Available", u.available ? `${u.available.version}${u.available.notes ? ` – ${u.available.notes}` : ""}` : "nothing newer"],
        ["Last result", u.last_result ? (typeof u.last_result === "string" ? u.last_result : u.last_result.message || JSON.stringify(u.last_result)) : "–"],
        ["Problem", u.error || "none"],
      ])),
      p ? h("div", {}, h("progress", { max: 100, value: p.percent || 0 }), ` ${p.phase} ${Math.round(p.percent || 0)} %`) : null,
      runs ? h("div", { class: "row" },
        h("button", { class: "secondary", onclick: async () => { try { await api("POST", "/api/v1/updates/check"); renderUpdates(); } catch (e) { toast(e.message); } } }, "Check now"),
        u.available ? h("button", { onclick: async () => { try { await api("POST", "/api/v1/updates/install"); toast("installing; the box restarts into the new version"); } catch (e) { toast(e.message); } } }, "Install now") : null,
        h("button", { class: "secondary", onclick: async () => { try { await api("POST", "/api/v1/updates/usb"); toast("looking for an update on USB"); } catch (e) { toast(e.message); } } }, "Install from USB stick")) : null,
      h("h2", {}, "History"),
      h("ul", {}, ...(hist || []).slice(0, 20).map((e) => h("li", {}, typeof e === "string" ? e : `${e.at ? new Date(e.at * 1000).toLocaleString() + ": " : ""}${e.message || e.result || JSON.stringify(e)}`))));
  } catch (e) {
    upd.replaceChildren(h("p", { class: "muted" }, e.message));
  }
}

async function renderSystem() {
  const s = await api("GET", "/api/v1/system");
  const rows = [
    ["CPU temperature", s.cpu_temperature_c !== null ? `${s.cpu_temperature_c.toFixed(1)} °C` : "not readable"],
    ["Load (1, 5, 15 min)", `${s.load.map((l) => l.toFixed(2)).join(", ")} on ${s.cpus} cores`],
    ["Memory available", `${bytes(s.memory_available_bytes)} of ${bytes(s.memory_total_bytes)}`],
    ["Data disk free", `${bytes(s.disk_free_bytes)} of ${bytes(s.disk_total_bytes)} (${s.disk_path})`],
    ["Uptime", duration(s.uptime_secs)],
  ];
  for (const d of s.storage) {
    rows.push([`Storage ${d.device}`, [d.model, d.temperature_c !== null ? `${d.temperature_c.toFixed(0)} °C` : null,
      d.wear_level ? `wear level ${d.wear_level}/11` : null].filter(Boolean).join(", ") || "no health data"]);
  }
  $("system").replaceChildren(...facts(rows));
  await renderJournal();
}
async function renderJournal() {
  const j = await api("GET", `/api/v1/journal/${$("journal-service").value}?lines=40`);
  $("journal").textContent = j.available
    ? j.lines.map((l) => `${new Date(l.at_us / 1000).toLocaleTimeString()} ${l.message}`).join("\n") || "(no lines)"
    : `The journal is not available here: ${j.reason}`;
}

async function renderSettings() {
  const c = await api("GET", "/api/v1/config");
  state.config = c;
  const admin = state.session.role === "admin";
  $("settings-coins").replaceChildren(...Object.entries(c.coins).map(([id, k]) => h("fieldset", { class: "card", "data-coin": id },
    h("legend", {}, `${k.name} (${k.network})`),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "enabled", checked: k.enabled }), " Mine this coin"),
    k.node_note ? h("p", { class: "banner" }, k.node_note) : null,
    h("label", {}, "Payout address (blocks pay here directly)", h("input", { name: "payout_address", value: k.payout_address || "", spellcheck: "false", autocomplete: "off" })),
    h("label", {}, "Who a found block pays",
      h("select", { name: "payout_policy" },
        h("option", { value: "miner", selected: k.payout_policy !== "owner" }, "The miner's own address if it signs in with one; otherwise the payout address"),
        h("option", { value: "owner", selected: k.payout_policy === "owner" }, "Always the payout address (a miner's user name is only a worker name)"))),
    h("div", { class: "row" },
      h("label", {}, "Stratum port", h("input", { name: "stratum_port", type: "number", min: 1024, max: 65535, value: k.stratum_port ?? "" })),
      h("label", {}, "Start difficulty", h("input", { name: "start_difficulty", type: "number", step: "any", value: k.start_difficulty ?? "" })),
      h("label", {}, "Min difficulty", h("input", { name: "min_difficulty", type: "number", step: "any", value: k.min_difficulty ?? "" })),
      h("label", {}, "Max difficulty", h("input", { name: "max_difficulty", type: "number", step: "any", value: k.max_difficulty ?? "" }))),
    poolPicker(id, k))));
  $("set-channel").value = c.updates.channel || "";
  $("set-snapshots").checked = !!c.snapshots.enabled;
  $("set-webhook").value = c.notify.webhook || "";
  $("set-ntfy").value = c.notify.ntfy || "";
  for (const el of $("settings-form").querySelectorAll("input, select, button")) el.disabled = !can("operator");
  // Coin settings decide who is paid: the admin's (the API refuses them to an operator too).
  if (!admin) for (const el of $("settings-coins").querySelectorAll("input, select, button")) el.disabled = true;
  await renderCloud();
  await renderAccess();
  await renderMfa();
}

// The coin's solo pool (coins.<id>.upstream): none by default, since a pool sees the payout
// address, the box's IP address and its hashrate. The well-known pools come from the box's
// API with what each charges and sees, for the coin's network only; "Use" fills the URL,
// which any pool may be.
function poolPicker(id, k) {
  const input = h("input", { name: "upstream", value: k.upstream || "", spellcheck: "false", autocomplete: "off",
    placeholder: "none: miners wait for the node", "data-testid": `upstream-${id}` });
  return h("div", { class: "pool-picker" },
    h("label", {}, "Solo pool while the node is not ready (stratum+tcp://host:port; empty for none)", input),
    h("button", { type: "button", class: "secondary", onclick: () => { input.value = ""; } }, "No pool"),
    (k.known_pools || []).length ? h("details", { "data-testid": `pools-${id}` },
      h("summary", {}, "Well-known solo pools"),
      h("ul", { class: "pools" }, ...k.known_pools.map((p) => h("li", { "data-testid": "known-pool" },
        h("b", {}, p.name), " ", h("code", {}, p.url),
        h("button", { type: "button", class: "secondary", onclick: () => { input.value = p.url; } }, "Use"),
        h("div", { class: "small" }, `Fee: ${p.fee}. Run by ${p.operator}.`),
        h("div", { class: "small muted" }, `Sees: ${p.sees}. `, h("a", { href: p.page, target: "_blank", rel: "noopener noreferrer" }, "The pool's page"))))))
      // Pools are listed per network: a mainnet pool is never offered for a test network.
      : h("p", { class: "small muted", "data-testid": `pools-${id}-none` },
        `No well-known solo pool is listed for ${k.name} ${k.network}; enter any pool's URL above.`));
}

async function saveSettings(ev) {
  ev.preventDefault();
  const edit = { coins: {}, updates: { channel: $("set-channel").value }, notify: { webhook: $("set-webhook").value, ntfy: $("set-ntfy").value }, snapshots: { enabled: $("set-snapshots").checked } };
  for (const fs of $("settings-coins").querySelectorAll("fieldset")) {
    const v = (n) => fs.querySelector(`[name=${n}]`);
    const num = (n) => (v(n).value === "" ? undefined : Number(v(n).value));
    edit.coins[fs.dataset.coin] = {
      enabled: v("enabled").checked, payout_address: v("payout_address").value.trim(),
      stratum_port: num("stratum_port"), start_difficulty: num("start_difficulty"),
      min_difficulty: num("min_difficulty"), max_difficulty: num("max_difficulty"),
      payout_policy: v("payout_policy").value, upstream: v("upstream").value.trim(),
    };
    // A coin left off with no address keeps whatever the file has.
    if (!edit.coins[fs.dataset.coin].enabled && !edit.coins[fs.dataset.coin].payout_address) delete edit.coins[fs.dataset.coin].payout_address;
  }
  if (!can("admin")) delete edit.coins;
  const out = $("settings-result");
  out.className = "";
  try {
    const r = await api("PUT", "/api/v1/config", edit);
    out.textContent = r.restart_required ? "Saved. Restart the services for the change to take effect." : "Saved and applied.";
    out.className = "ok";
  } catch (e) {
    out.textContent = e.message;
    out.className = "error";
  }
}

// ---- users, sessions, audit (issue 17) -------------------------------------------------------
const when = (unix) => new Date(unix * 1000).toLocaleString();

async function renderAccess() {
  $("me").textContent = `${state.session.user || ""} (${state.session.role})`;
  const sessions = await api("GET", "/api/v1/sessions");
  $("sessions-list").replaceChildren(...sessions.map((x) => h("tr", { "data-testid": `session-${x.id}` },
    h("td", {}, x.user), h("td", { class: "small" }, x.user_agent || "–"), h("td", {}, x.address),
    h("td", {}, when(x.created)), h("td", {}, x.current ? "this one" : when(x.last_seen)),
    h("td", {}, x.current ? null : h("button", { type: "button", class: "secondary", "data-testid": `revoke-${x.id}`, onclick: async () => {
      try { await api("DELETE", `/api/v1/sessions/${x.id}`); await renderAccess(); } catch (e) { toast(e.message); }
    } }, "Revoke")))));
  if (!can("admin")) return;
  const users = await api("GET", "/api/v1/users");
  const edit = async (name, change) => {
    try { await api("PATCH", `/api/v1/users/${encodeURIComponent(name)}`, change); $("users-result").textContent = ""; }
    catch (e) { $("users-result").textContent = e.message; }
    await renderAccess();
  };
  $("users-list").replaceChildren(...users.map((u) => h("tr", { "data-testid": `user-${u.name}` },
    h("td", {}, u.name),
    h("td", {}, h("select", { "aria-label": `role of ${u.name}`, onchange: (ev) => edit(u.name, { role: ev.target.value }) },
      ...["viewer", "operator", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)))),
    h("td", {}, u.disabled ? "disabled" : "active"),
    // Another user's second factor: shown, and removable when they lost their phone and
    // recovery codes (their own is turned off in Settings, with a code).
    h("td", {}, h("span", { "data-testid": `mfa-${u.name}` }, u.two_factor ? "on" : "off"),
      u.two_factor && u.name !== state.session.user ? [" ", h("button", { type: "button", class: "secondary", "data-testid": `remove-mfa-${u.name}`, onclick: async () => {
        if (!confirm(`Remove ${u.name}'s two-factor sign-in? They sign in with their password alone until they set it up again.`)) return;
        try { await api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}/mfa`); $("users-result").textContent = ""; }
        catch (e) { $("users-result").textContent = e.message; }
        await renderAccess();
      } }, "Remove two-factor")] : null),
    h("td", {},
      h("button", { type: "button", class: "secondary", onclick: () => edit(u.name, { disabled: !u.disabled }) }, u.disabled ? "Enable" : "Disable"), " ",
      h("button", { type: "button", class: "secondary", "data-testid": `remove-${u.name}`, onclick: async () => {
        if (!confirm(`Remove ${u.name}? Their sessions end.`)) return;
        try { await api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}`); $("users-result").textContent = ""; }
        catch (e) { $("users-result").textContent = e.message; }
        await renderAccess();
      } }, "Remove")))));
  const log = await api("GET", "/api/v1/audit?limit=100");
  $("audit-list").replaceChildren(...log.map((e) => h("tr", {},
    h("td", {}, when(e.at)), h("td", {}, e.who), h("td", {}, e.action), h("td", { class: "small" }, e.detail))));
}

// ---- pool mode (issue 17 points 4 and 5) -----------------------------------------------------
// Per enabled coin: your payout address, your payouts and your line of the window; an admin
// sees everyone's, and sets the pool's configuration, whose every version is listed.
const POOL_KEYS = [
  ["port", "Pool port", { min: 1024, max: 65535 }], ["fee_bps", "Fee (basis points, 100 = 1 %)", { min: 0, max: 1000 }],
  ["fee_address", "Fee address", null], ["window_factor", "Window (× network difficulty)", { step: "any" }],
  ["max_outputs", "Outputs at most", { min: 1, max: 500 }], ["start_difficulty", "Start difficulty", { step: "any" }],
  ["min_difficulty", "Min difficulty", { step: "any" }], ["max_difficulty", "Max difficulty", { step: "any" }],
];

async function renderPool() {
  const v = await api("GET", "/api/v1/pool");
  const admin = can("admin");
  if (!v.coins.length) {
    $("pool-coins").replaceChildren(h("p", { class: "card" }, "No coin is enabled; an admin enables one in Settings."));
    return;
  }
  $("pool-coins").replaceChildren(...v.coins.map((c) => poolCoin(c, v.addresses, admin)));
}

function poolCoin(c, addresses, admin) {
  const mine = addresses.find((a) => a.coin === c.id && a.user === state.session.user);
  const result = h("p", { "data-testid": `pool-address-result-${c.id}` });
  const input = h("input", { value: mine ? mine.address : "", spellcheck: "false", autocomplete: "off", "data-testid": `pool-address-${c.id}`, "aria-label": `your ${c.name} payout address` });
  const save = async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("PUT", `/api/v1/pool/addresses/${c.id}`, { address: input.value.trim() });
      result.textContent = `saved (payee ${r.id}); miners sign in as ${state.session.user}.<worker>`;
      result.className = "ok";
    } catch (e) { result.textContent = e.message; result.className = "error"; }
  };
  const remove = async () => {
    try { await api("DELETE", `/api/v1/pool/addresses/${c.id}`); await renderPool(); } catch (e) { result.textContent = e.message; result.className = "error"; }
  };
  const card = h("div", { class: "card", "data-coin": c.id },
    h("h2", {}, `${c.name} (${c.network})`),
    h("p", { class: c.running ? "ok" : "muted", "data-testid": `pool-state-${c.id}` },
      c.running ? `Pool mode running on ${c.window.listen}, configuration version ${c.window.config_version}` : c.note || "pool mode not running"),
    h("form", { class: "row", onsubmit: save },
      h("label", {}, `Your ${c.name} payout address`, input),
      h("button", { type: "submit" }, "Save"),
      mine ? h("button", { type: "button", class: "secondary", onclick: remove }, "Remove") : null),
    result);
  if (c.window) {
    card.append(h("h3", {}, admin ? "The window" : "Your share of the window"),
      h("p", { class: "muted small" }, `${difficulty(c.window.window_work)} of ${difficulty(c.window.window_size)} work, ${c.window.miners} miners, fee ${c.window.fee_bps} bps`),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Work"), h("th", {}, "Share"), h("th", {}, "Carried"))),
        h("tbody", {}, ...c.window.payees.map((p) => h("tr", {}, h("td", {}, p.user), h("td", {}, difficulty(p.work)), h("td", {}, pct(p.fraction)), h("td", {}, coins(p.carry_sats)))))));
  }
  if (c.config || c.payouts.length) {
    card.append(h("h3", {}, admin ? "Payouts" : "Your payouts"),
      c.payouts.length ? h("table", {}, h("thead", {}, h("tr", {}, ...["Height", "Block", "User", "Amount", "Shares", "Window", "Version", "State"].map((t) => h("th", {}, t)))),
        h("tbody", { "data-testid": `pool-payouts-${c.id}` }, ...c.payouts.map((p) => h("tr", {},
          h("td", {}, p.height), h("td", { class: "small" }, (p.block_hash || "").slice(0, 16)), h("td", {}, p.user), h("td", {}, coins(p.amount_sats)),
          h("td", {}, p.shares), h("td", {}, `${difficulty(p.window_work)} (${p.window_shares} shares)`), h("td", {}, p.config_version),
          h("td", {}, p.state === "pending" ? `pending (${p.confirmations} conf.)` : p.state)))))
        : h("p", { class: "muted small" }, "No block found on the pool port yet."));
  }
  if (admin) {
    const others = addresses.filter((a) => a.coin === c.id);
    card.append(h("h3", {}, "Registered addresses"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Payee"), h("th", {}, "Address"), h("th", {}, "Changed"))),
        h("tbody", {}, ...others.map((a) => h("tr", {}, h("td", {}, a.user), h("td", {}, a.id), h("td", { class: "small" }, a.address), h("td", {}, when(a.updated)))))));
    card.append(poolConfigForm(c));
  }
  card.append(h("h3", {}, "Configuration history"),
    c.history.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Version"), h("th", {}, "When"), h("th", {}, "Who"), h("th", {}, "What changed"))),
      h("tbody", { "data-testid": `pool-history-${c.id}` }, ...c.history.map((e) => h("tr", {},
        h("td", {}, e.version), h("td", {}, when(e.at)), h("td", {}, e.who), h("td", { class: "small" }, e.changes.join("; "))))))
      : h("p", { class: "muted small" }, "Never changed."));
  return card;
}

function poolConfigForm(c) {
  const k = c.config || {};
  const on = h("input", { type: "checkbox", checked: !!c.config, "data-testid": `pool-enabled-${c.id}` });
  const fields = POOL_KEYS.map(([key, label, attrs]) => [key, h("input", { name: key, type: attrs ? "number" : "text", ...(attrs || {}), value: k[key] ?? "", "data-testid": `pool-${key}-${c.id}` }), label]);
  const result = h("p", { "data-testid": `pool-config-result-${c.id}` });
  const save = async (ev) => {
    ev.preventDefault();
    const edit = { enabled: on.checked };
    if (on.checked) for (const [key, input] of fields) {
      const v = input.value.trim();
      if (v !== "") edit[key] = input.type === "number" ? Number(v) : v;
    }
    try {
      const r = await api("PUT", `/api/v1/pool/config/${c.id}`, edit);
      toast(`Pool configuration saved as version ${r.config_version}${r.restart_required ? "; restart the services to apply it" : ""}`);
      await renderPool();
    } catch (e) { result.textContent = e.message; result.className = "error"; }
  };
  return h("form", { class: "admin-only", onsubmit: save },
    h("h3", {}, "Pool configuration"),
    h("label", { class: "check" }, on, " Pool mode on (a PPLNS port beside the solo port)"),
    h("div", { class: "row" }, ...fields.map(([, input, label]) => h("label", {}, label, input))),
    h("button", { type: "submit", "data-testid": `pool-config-save-${c.id}` }, "Save configuration"),
    result);
}

// ---- MineBox Cloud ----------------------------------------------------------------------------
// The link state comes from the box's API (which asks the cloud); while a code waits, the card
// asks again every few seconds until the box is linked or the code runs out.
async function renderCloud() {
  clearTimeout(renderCloud.timer);
  clearInterval(renderCloud.clock);
  const c = await api("GET", "/api/v1/cloud");
  const admin = state.session.role === "admin";
  $("cloud-message").textContent = c.message;
  $("cloud-message").className = c.state === "unreachable" ? "error" : c.state === "linked" ? "ok" : "";
  const pairing = c.state === "pending" && !!c.code;
  $("cloud-pairing").hidden = !pairing;
  if (pairing) {
    $("cloud-code").textContent = c.code;
    $("cloud-url").textContent = c.url;
    $("cloud-url").href = c.url;
    const until = Date.now() + (c.expires_in || 0) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((until - Date.now()) / 1000));
      $("cloud-left").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    };
    tick();
    renderCloud.clock = setInterval(tick, 1000);
  }
  $("cloud-link").hidden = !["unlinked", "pending", "unreachable"].includes(c.state);
  $("cloud-link").textContent = c.state === "pending" ? "New code" : "Link to MineBox Cloud";
  $("cloud-unlink").hidden = c.state !== "linked";
  $("cloud-telemetry").checked = !!c.telemetry;
  $("cloud-telemetry").disabled = !admin;
  $("cloud-problem").hidden = !c.telemetry_problem;
  $("cloud-problem").textContent = c.telemetry_problem || "";
  $("cloud-what").textContent = c.what_is_sent;
  if (c.state === "pending" && state.page === "settings") renderCloud.timer = setTimeout(() => renderCloud().catch((e) => toast(e.message)), 3000);
}

async function cloudAction(path) {
  try { await api("POST", path); } catch (e) { toast(e.message); }
  await renderCloud().catch((e) => toast(e.message));
}

async function setTelemetry() {
  const on = $("cloud-telemetry").checked;
  try {
    await api("PUT", "/api/v1/config", { cloud: { telemetry: on } });
    toast(on ? "Telemetry on: the box sends what is listed below while it is linked." : "Telemetry off: the box sends nothing.");
  } catch (e) { toast(e.message); }
  await renderCloud().catch((e) => toast(e.message));
}

// ---- navigation and live updates --------------------------------------------------------------
const renderers = { overview: async () => renderOverview(await api("GET", "/api/v1/overview")), miners: renderMiners, blocks: renderBlocks, pool: renderPool, nodes: renderNodes, updates: renderUpdates, system: renderSystem, settings: renderSettings };

async function show(page) {
  if (!renderers[page]) page = "overview";
  state.page = page;
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== `page-${page}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === `#${page}`);
  try { await renderers[page](); } catch (e) { if (e.message !== "sign in first") toast(e.message); }
}

function connectEvents() {
  if (state.events) state.events.close();
  const es = new EventSource("/api/v1/events");
  state.events = es;
  es.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").classList.remove("on"); };
  es.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (ev.kind === "overview") {
      if (state.page === "overview") renderOverview(ev);
      else state.overview = ev;
    } else if (ev.kind === "block_found") {
      toast(`Block found! ${ev.coin.toUpperCase()} height ${ev.height} by ${ev.worker}`);
      if (state.page === "blocks") renderBlocks();
    } else if (ev.kind && state.page === "blocks" && ev.kind.startsWith("block_")) {
      renderBlocks();
    } else if (ev.source === "supervisor" && state.page === "nodes") {
      renderNodes();
    }
  };
}

function start() {
  $("auth").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  document.body.classList.toggle("viewer", state.session.role === "viewer");
  document.body.classList.toggle("not-admin", state.session.role !== "admin");
  document.body.classList.toggle("must-enrol", !!state.session.mfa_must_enrol);
  if (state.session.mfa_must_enrol) {
    // The box refuses this admin everything else until they set up two-factor sign-in.
    $("nav").hidden = true;
    for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-settings";
    state.page = "settings";
    renderMfa().catch((e) => toast(e.message));
    return;
  }
  connectEvents();
  show(location.hash.slice(1) || "overview");
}

async function boot() {
  $("auth-form").addEventListener("submit", submitAuth);
  bindMfa();
  $("settings-form").addEventListener("submit", saveSettings);
  $("journal-service").addEventListener("change", () => renderJournal().catch((e) => toast(e.message)));
  $("logout").addEventListener("click", async () => {
    try { await api("POST", "/api/v1/auth/logout"); } catch (_) { /* signed out anyway */ }
    if (state.events) state.events.close();
    state.session = await api("GET", "/api/v1/auth/session");
    showAuth();
  });
  $("lan-scan").addEventListener("click", scanLan);
  $("cloud-link").addEventListener("click", () => cloudAction("/api/v1/cloud/link"));
  $("cloud-unlink").addEventListener("click", () => cloudAction("/api/v1/cloud/unlink"));
  $("cloud-telemetry").addEventListener("change", setTelemetry);
  $("notify-test").addEventListener("click", async () => {
    try {
      const r = await api("POST", "/api/v1/notify/test");
      $("notify-result").textContent = r.sent ? "sent" : `not delivered: ${r.errors.join("; ")}`;
    } catch (e) { $("notify-result").textContent = e.message; }
  });
  $("password-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("PUT", "/api/v1/auth/password", { password: $("pw-new").value, current_password: $("pw-current").value });
      $("pw-result").textContent = "changed; your other sessions are signed out";
      $("pw-current").value = ""; $("pw-new").value = "";
      await renderAccess();
    } catch (e) { $("pw-result").textContent = e.message; }
  });
  $("user-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", { name: $("user-name").value.trim(), role: $("user-role").value, password: $("user-password").value });
      $("users-result").textContent = `added ${$("user-name").value.trim()}`;
      $("user-name").value = ""; $("user-password").value = "";
    } catch (e) { $("users-result").textContent = e.message; }
    await renderAccess();
  });
  $("upload-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = $("upload-file").files[0];
    if (!file) return;
    // XMLHttpRequest, not fetch: it reports upload progress.
    const x = new XMLHttpRequest();
    x.open("POST", "/api/v1/updates/upload");
    x.setRequestHeader("X-CSRF-Token", state.session.csrf_token);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    $("upload-progress").hidden = false;
    x.upload.onprogress = (e) => { if (e.lengthComputable) $("upload-progress").value = (100 * e.loaded) / e.total; };
    x.onload = () => {
      let msg = "installed; the box restarts into the new version";
      try { const r = JSON.parse(x.responseText); if (x.status >= 400) msg = r.error; } catch (_) { if (x.status >= 400) msg = `${x.status}`; }
      $("upload-result").textContent = msg;
    };
    x.send(file);
  });
  window.addEventListener("hashchange", () => {
    // An admin who must set up two-factor sign-in stays on its card (the box refuses the rest).
    if (state.session && state.session.signed_in && !state.session.mfa_must_enrol) show(location.hash.slice(1));
  });
  state.session = await api("GET", "/api/v1/auth/session");
  if (state.session.signed_in) start(); else showAuth();
}

document.addEventListener("DOMContentLoaded", () => boot().catch((e) => toast(e.message)));
