// Connect: the gateway's URL and the secret. The secret is kept in this
// tab's sessionStorage only (gone when the tab closes), never in
// localStorage, a cookie or a URL.

import { go } from "./app.js";
import { $, say } from "./dom.js";

const STORE = "wasmclaw.connection";
let conn;
let countdown = null;
/** The page the user asked for before connecting; shown once connected. */
let wanted = null;

/** Remember `page` to show once connected. */
export function want(page) {
  wanted = page;
}

export function init(connection) {
  conn = connection;
  $("gw-url").value = location.origin;
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  $("disconnect").addEventListener("click", () => {
    sessionStorage.removeItem(STORE);
    conn.disconnect();
    $("secret").value = "";
    say($("connect-ok"), "Disconnected; the secret is forgotten.");
    update();
  });
  conn.addEventListener("state", update);
}

export function show() {
  update();
  if (!conn.open) $("secret").focus();
}

function update() {
  $("disconnect").hidden = conn.state === "idle";
}

/** Connect with what the form holds. */
async function submit() {
  const url = $("gw-url").value.trim() || location.origin;
  const kind = document.querySelector('input[name="kind"]:checked').value;
  const secret = $("secret").value;
  clearInterval(countdown);
  say($("connect-error"), "");
  say($("connect-ok"), "");
  try {
    new URL(url);
  } catch {
    showError(new Error(`${url} is not a URL`));
    return;
  }
  const button = document.querySelector('[data-testid="connect-button"]');
  button.disabled = true;
  try {
    await conn.connect(url, secret ? { [kind]: secret } : {});
    sessionStorage.setItem(STORE, JSON.stringify({ url, kind, secret }));
    connected();
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

function connected() {
  say($("connect-ok"), `Connected to ${conn.client?.hello?.server?.name || "the gateway"} ` +
    `${conn.client?.hello?.server?.version || ""}.`);
  const next = wanted && wanted !== "connect" ? wanted : "chat";
  wanted = null;
  go(next);
}

/** Show the gateway's refusal; a lock-out counts down to when a retry may work. */
export function showError(e) {
  clearInterval(countdown);
  const box = $("connect-error");
  const retryMs = e.retryAfterMs;
  if (retryMs == null) {
    say(box, e.message);
    return;
  }
  const until = Date.now() + retryMs;
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    say(box, left > 0 ? `${e.message} Retry in ${left} s.` : `${e.message} You may retry now.`);
    box.dataset.retryAfter = String(left);
    if (left === 0) clearInterval(countdown);
  };
  tick();
  countdown = setInterval(tick, 1000);
}

/** Reconnect with what this tab stored, if anything (a reload keeps the connection). */
export function resume() {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(STORE) || "null"); } catch { /* ignore */ }
  if (!saved) return;
  $("gw-url").value = saved.url;
  const radio = document.querySelector(`input[name="kind"][value="${saved.kind === "password" ? "password" : "token"}"]`);
  radio.checked = true;
  $("secret").value = saved.secret || "";
  conn.connect(saved.url, saved.secret ? { [saved.kind]: saved.secret } : {}).then(() => {
    const page = location.hash.replace(/^#/, "");
    if (!page || page === "connect") connected();
    else { wanted = null; go(page); }
  }, (e) => {
    sessionStorage.removeItem(STORE);
    showError(e);
    go("connect");
  });
}
