// The MineBox Cloud account page. Plain DOM, no framework, nothing fetched from elsewhere;
// it speaks the service's JSON API (docs/cloud.md). Everything that came from a user or a box
// (device names, versions, messages) goes in as text (textContent, text nodes, .value), never
// as HTML, so a box named `<img src=x onerror=...>` shows as those characters.
"use strict";

const state = { me: null, resetToken: null };

// ---- API ----------------------------------------------------------------------------------
// Every request carries the header the service asks of cookie-authenticated requests that change
// something: another site cannot make a browser send it (CSRF).
async function api(method, path, body) {
  const headers = { "MineBox-CSRF": "1", Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw Object.assign(new Error("The service did not answer; check your connection and try again."), { status: 0 });
  }
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON: said below */ }
  if (!r.ok) {
    const said = data && data.error ? data.error : `the service answered ${r.status} ${r.statusText}`;
    throw Object.assign(new Error(sentence(said)), { status: r.status });
  }
  return data || {};
}

// ---- formatting ---------------------------------------------------------------------------
function sentence(s) {
  s = String(s || "");
  return s ? s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? "" : ".") : s;
}
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
function bytes(b) {
  if (b === null || b === undefined) return "unlimited";
  let i = 0;
  while (b >= 1024 && i < UNITS.length - 1) { b /= 1024; i++; }
  return `${i === 0 ? b : b.toFixed(b >= 100 ? 0 : 1).replace(/\.0$/, "")} ${UNITS[i]}`;
}
function when(iso) {
  if (!iso) return "never";
  return iso.replace("T", " ").replace(/:\d\dZ$/, " UTC");
}
function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 90) return "just now";
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
const limit = (v, unit) => (v === null || v === undefined ? "unlimited" : `${v}${unit}`);

// ---- DOM ----------------------------------------------------------------------------------
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
function notice(text, good = false) {
  const n = $("notice");
  n.textContent = text || "";
  n.classList.toggle("good", good);
  n.hidden = !text;
}
function show(view) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  const signedIn = view === "account";
  $("logout").hidden = !signedIn;
  $("who").hidden = !signedIn;
}
// A form's submit: its button is off while the request runs; a refusal goes to `errorEl`.
function onSubmit(form, errorEl, fn) {
  $(form).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = $(form).querySelector("button[type=submit]");
    $(errorEl).textContent = "";
    button.disabled = true;
    try { await fn(); } catch (e) { $(errorEl).textContent = e.message; } finally { button.disabled = false; }
  });
}

// ---- signed out ---------------------------------------------------------------------------
onSubmit("login-form", "login-error", async () => {
  await api("POST", "/api/v1/login", { email: $("login-email").value, password: $("login-password").value });
  $("login-password").value = "";
  notice("");
  await openAccount();
  location.hash = "#account";
});

onSubmit("signup-form", "signup-error", async () => {
  const body = { email: $("signup-email").value, password: $("signup-password").value };
  const name = $("signup-name").value.trim();
  if (name) body.display_name = name;
  const r = await api("POST", "/api/v1/signup", body);
  $("signup-password").value = "";
  $("mail-text").textContent = sentence(r.message);
  location.hash = "#mail";
});

onSubmit("forgot-form", "forgot-error", async () => {
  const r = await api("POST", "/api/v1/password-reset", { email: $("forgot-email").value });
  $("mail-text").textContent = `${sentence(r.message)} The link works for an hour.`;
  location.hash = "#mail";
});

onSubmit("reset-form", "reset-error", async () => {
  if ($("reset-password").value !== $("reset-confirm").value) throw new Error("The two passwords differ.");
  const r = await api("POST", "/api/v1/password-reset/confirm", { token: state.resetToken, password: $("reset-password").value });
  state.resetToken = null;
  $("reset-password").value = $("reset-confirm").value = "";
  location.hash = "#login";
  notice(sentence(r.message), true);
});

// The mailed verification link: the page verifies with POST, so a mail scanner fetching the
// link without running scripts does not use it up.
async function verifyFromLink(token) {
  show("verify");
  try {
    await api("POST", "/api/v1/verify", { token });
    show("login");
    notice("Your email address is verified: log in.", true);
  } catch (e) {
    $("verify-text").textContent = e.message;
  }
}

// ---- the account --------------------------------------------------------------------------
async function openAccount() {
  try {
    state.me = await api("GET", "/api/v1/me");
  } catch (e) {
    if (e.status === 401) { location.hash = "#login"; return false; }
    throw e;
  }
  $("who").textContent = state.me.email;
  $("leaderboard-public").checked = !!state.me.leaderboard_public;
  show("account");
  await Promise.all([loadDevices(), loadSubscription(), loadUsage(), loadDownloads()]).catch((e) => notice(e.message));
  return true;
}

// A request from the account view; an ended session goes back to the login.
async function accountApi(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (e) {
    if (e.status === 401) { state.me = null; location.hash = "#login"; notice(e.message); }
    throw e;
  }
}

async function loadDevices() {
  const { devices } = await accountApi("GET", "/api/v1/devices");
  const body = $("devices").tBodies[0];
  body.replaceChildren(...devices.map(deviceRow));
  $("devices").hidden = devices.length === 0;
  $("devices-empty").hidden = devices.length !== 0;
}

function deviceRow(d) {
  const name = d.name ? h("span", { "data-testid": "device-name" }, d.name) : h("span", { class: "muted", "data-testid": "device-name" }, "unnamed box");
  const nameCell = h("td", { class: "name" }, name, d.version ? h("div", { class: "muted small" }, `${d.model || "box"} · ${d.version}`) : null);
  const row = h("tr", { "data-device": d.id },
    nameCell,
    h("td", {}, h("span", { class: "badge" }, d.status)),
    h("td", { title: when(d.last_seen_at) }, ago(d.last_seen_at)),
    h("td", {}, when(d.linked_at)),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "secondary", "data-testid": "rename", onclick: () => renameForm(d, nameCell) }, "Rename"),
      h("button", { type: "button", class: "danger", "data-testid": "unlink", onclick: () => unlink(d) }, "Unlink")));
  return row;
}

function renameForm(d, cell) {
  const input = h("input", { type: "text", maxlength: "100", required: true, "data-testid": "rename-input", "aria-label": "New name" });
  input.value = d.name || "";
  const form = h("form", {},
    input,
    h("button", { type: "submit", "data-testid": "rename-save" }, "Save"),
    h("button", { type: "button", class: "secondary", onclick: () => loadDevices().catch((e) => ($("devices-error").textContent = e.message)) }, "Cancel"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("devices-error").textContent = "";
    try {
      await accountApi("PATCH", `/api/v1/devices/${encodeURIComponent(d.id)}`, { name: input.value });
      await loadDevices();
    } catch (e) { $("devices-error").textContent = e.message; }
  });
  cell.replaceChildren(form);
  input.focus();
}

async function unlink(d) {
  if (!confirm(`Unlink ${d.name || "this box"} from your account? What it reported is forgotten; it can be paired again.`)) return;
  $("devices-error").textContent = "";
  try {
    const r = await accountApi("DELETE", `/api/v1/devices/${encodeURIComponent(d.id)}`);
    notice(sentence(r.message), true);
    await loadDevices();
  } catch (e) { $("devices-error").textContent = e.message; }
}

onSubmit("pair-form", "devices-error", async () => {
  const r = await accountApi("POST", "/api/v1/devices/pair", { code: $("pair-code").value });
  $("pair-code").value = "";
  notice(sentence(r.message), true);
  await loadDevices();
});

async function loadSubscription() {
  const s = await accountApi("GET", "/api/v1/subscription");
  const l = s.limits;
  const sub = s.subscription;
  const facts = [
    ["Plan", h("span", { "data-testid": "plan" }, s.plan)],
    ["Price", s.monthly_price_cents ? `$${(s.monthly_price_cents / 100).toFixed(2)} a month` : "free"],
    ["Status", sub ? h("span", { class: `badge ${sub.in_effect ? "active" : "inactive"}` }, sub.in_effect ? sub.status : `${sub.status}, not in effect`) : "no subscription"],
    ["Period ends", sub ? (sub.period_end ? when(sub.period_end) : "no end date") : "–"],
    ["Snapshot downloads", h("span", { "data-testid": "limit-downloads" }, limit(l.snapshot_downloads_per_month, " a month"))],
    ["Snapshot data", h("span", { "data-testid": "limit-bytes" }, l.snapshot_bytes_per_month === null ? "unlimited" : `${bytes(l.snapshot_bytes_per_month)} a month`)],
    ["Boxes", h("span", { "data-testid": "limit-devices" }, limit(l.max_devices, ""))],
    ["Coins per box", limit(l.coins_supported, "")],
  ];
  $("subscription").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("subscription-text").textContent = sentence(s.message);
}

function meter(label, used, max, fmt, testid) {
  const text = max === null ? `${fmt(used)} (unlimited)` : `${fmt(used)} of ${fmt(max)}`;
  return h("div", { class: "meter" },
    h("div", { class: "meter-label" }, h("span", {}, label), h("span", { class: "meter-value", "data-testid": testid }, text)),
    max === null ? null : h("progress", { max: String(Math.max(max, 1)), value: String(Math.min(used, max)) }));
}

async function loadUsage() {
  const u = await accountApi("GET", "/api/v1/usage");
  $("usage").replaceChildren(
    meter("Snapshot downloads", u.downloads.used, u.downloads.limit, String, "usage-downloads"),
    meter("Data downloaded", u.bytes.used, u.bytes.limit, bytes, "usage-bytes"));
  $("usage-text").textContent = sentence(u.message);
}

async function loadDownloads() {
  const { downloads } = await accountApi("GET", "/api/v1/downloads");
  $("downloads").tBodies[0].replaceChildren(...downloads.map((d) => h("tr", {},
    h("td", {}, when(d.started_at)),
    h("td", {}, d.coin),
    h("td", {}, `${d.kind} at height ${d.height}${d.network === "main" ? "" : ` (${d.network})`}`),
    h("td", {}, d.device ? (d.device.name || "unnamed box") : h("span", { class: "muted" }, "no longer linked")),
    h("td", {}, `${bytes(d.bytes)}, ${d.chunks} chunks${d.resumed ? `, resumed ${d.resumed}×` : ""}`),
    h("td", {}, d.completed_at ? (d.verified === false ? "failed verification" : "complete") : "in progress"))));
  $("downloads").hidden = downloads.length === 0;
  $("downloads-empty").hidden = downloads.length !== 0;
}

$("leaderboard-public").addEventListener("change", async (ev) => {
  const box = ev.target;
  box.disabled = true;
  try {
    const r = await accountApi("PUT", "/api/v1/leaderboard/visibility", { public: box.checked });
    $("leaderboard-text").textContent = sentence(r.message);
  } catch (e) {
    box.checked = !box.checked;
    $("leaderboard-text").textContent = e.message;
  } finally { box.disabled = false; }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch (_) { /* ended either way */ }
  state.me = null;
  location.hash = "#login";
  notice("You are logged out.", true);
});

// ---- where the page is --------------------------------------------------------------------
const SIGNED_OUT = ["login", "signup", "forgot", "mail"];
async function route() {
  const view = location.hash.slice(1);
  if (view === "reset" && state.resetToken) return show("reset");
  if (SIGNED_OUT.includes(view)) return show(view);
  if (state.me) return show("account");
  if (!(await openAccount())) show("login");
}
window.addEventListener("hashchange", () => { route().catch((e) => notice(e.message)); });

(async () => {
  const token = new URLSearchParams(location.search).get("token");
  // The mailed links: take the token, then drop it from the address (and the history).
  if (location.pathname === "/verify") {
    history.replaceState(null, "", "/");
    return verifyFromLink(token || "");
  }
  if (location.pathname === "/reset") {
    state.resetToken = token || "";
    history.replaceState(null, "", "/#reset");
    return show("reset");
  }
  await route();
})().catch((e) => notice(e.message));
