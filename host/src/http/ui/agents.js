// Agents: what every id serves (`agents.list`), live through
// `agents.changed` whoever made the change; install a component by dropping
// it or choosing it (`PUT /admin/agents/{id}`, the raw bytes), roll back and
// remove (`agents.rollback`, `agents.remove`); rollouts below the table
// (`rollouts.js`).

import { currentPage } from "./app.js";
import { $, h, say, shortDigest, shortWhen, when, confirmButton } from "./dom.js";
import * as rollouts from "./rollouts.js";

let conn;
let file = null;
/** Ids changed since the last draw, to highlight their rows. */
const changed = new Set();
let poll = null;
/** What the table shows now, to leave it alone (focus and a half-confirmed Remove too) while nothing changed. */
let shown = "";

export function init(connection) {
  conn = connection;
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer?.files?.length) choose(e.dataTransfer.files[0]);
  });
  $("agent-file").addEventListener("change", (e) => choose(e.target.files[0] || null));
  $("upload-form").addEventListener("submit", (e) => {
    e.preventDefault();
    upload();
  });
  conn.addEventListener("agents.changed", (e) => {
    const { id, action, digest } = e.detail;
    changed.add(id);
    const what = action === "removed" ? "removed" : `${action} (${shortDigest(digest)})`;
    say($("agents-note"), `${id} ${what} at ${new Date().toLocaleTimeString()}.`, "hint");
    if (currentPage() === "agents") load();
  });
}

export function show() {
  if (!conn.open) return;
  const admin = conn.allows("operator.admin");
  for (const el of $("upload-form").querySelectorAll("input, button")) el.disabled = !admin;
  if (!admin) say($("upload-status"), "Installing, rolling back and removing need the operator.admin scope.");
  load();
  // In-flight counts change without an event; refresh them while the page is shown.
  clearInterval(poll);
  poll = setInterval(() => { if (conn.open) load(); }, 5000);
}

export function hide() {
  clearInterval(poll);
}

function choose(f) {
  file = f;
  $("drop-file").textContent = f ? `${f.name}, ${(f.size / 1024).toFixed(1)} KiB` : "";
  const id = $("upload-id");
  if (f && !id.value) id.value = f.name.replace(/\.wasm$/i, "").toLowerCase().replace(/[^a-z0-9_-]/g, "-");
}

async function load() {
  let list;
  try {
    list = await conn.call("agents.list");
  } catch (e) {
    say($("agents-note"), `Could not list agents: ${e.message}`, "error");
    return;
  }
  const admin = conn.allows("operator.admin");
  const state = JSON.stringify([list, admin]);
  if (state === shown && !changed.size) return;
  shown = state;
  // Keep the keyboard where it was: the same control of the same agent, if it is still there.
  const focused = document.activeElement?.closest?.("[data-agent-id]") && document.activeElement;
  const refocus = focused && [focused.closest("[data-agent-id]").dataset.agentId, focused.dataset.testid];
  $("agents-body").replaceChildren(...list.agents.map((a) => row(a, admin, list.defaultId)));
  $("agent-ids").replaceChildren(...list.agents.map((a) => h("option", { value: a.id })));
  rollouts.draw(list.agents, admin, rolloutAct);
  changed.clear();
  if (refocus) {
    const [id, testid] = refocus;
    document.querySelector(`[data-agent-id="${CSS.escape(id)}"] [data-testid="${CSS.escape(testid)}"]`)?.focus();
  }
}

function row(a, admin, defaultId) {
  const prev = a.previous;
  const tr = h("tr", { "data-testid": "agent-row", "data-agent-id": a.id, class: changed.has(a.id) ? "changed" : null },
    h("th", { scope: "row" }, a.id, a.id === defaultId ? h("span", { class: "tag" }, "default") : null),
    h("td", { "data-col": "name", "data-label": "Name", title: a.description || "" }, a.name),
    h("td", { "data-col": "version", "data-label": "Version" }, a.version),
    h("td", { "data-col": "digest", "data-label": "Digest" }, h("code", { title: a.digest }, shortDigest(a.digest))),
    h("td", { "data-col": "source", "data-label": "Source" }, a.source),
    h("td", { "data-col": "loaded", "data-label": "Loaded" }, h("time", { title: when(a.loadedAt) }, shortWhen(a.loadedAt))),
    h("td", { "data-col": "in-flight", "data-label": "In flight" }, String(a.inFlight ?? "—")),
    h("td", { "data-col": "previous", "data-label": "Previous" }, prev ? `${prev.name} ${prev.version} ` : "—",
      prev ? h("code", { title: prev.digest }, shortDigest(prev.digest)) : null),
    h("td", { class: "actions" },
      h("button", {
        type: "button", "data-testid": "agent-rollback", disabled: !admin || !prev,
        "aria-label": `Roll back ${a.id}`, onclick: () => act("agents.rollback", a.id, "rolled back"),
      }, "Roll back"),
      admin ? confirmButton("Remove", "Really remove?", "agent-remove",
        () => act("agents.remove", a.id, "removed")) : null));
  return tr;
}

async function act(method, id, done) {
  const status = $("upload-status");
  try {
    const agent = await conn.call(method, { agentId: id });
    say(status, agent.removed ? `${id} ${done}.` : `${id} ${done}: now ${agent.name} ${agent.version} ` +
      `(${shortDigest(agent.digest)}).`);
  } catch (e) {
    say(status, `${id}: ${e.message}`);
  }
  load();
}

async function rolloutAct(method, id, done) {
  try {
    rollouts.report($("rollouts-status"), id, done, await conn.call(method, { agentId: id }));
  } catch (e) {
    rollouts.report($("rollouts-status"), id, done, null, e);
  }
  load();
}

async function upload() {
  const status = $("upload-status");
  const id = $("upload-id").value.trim().toLowerCase();
  if (!file) {
    say(status, "Choose or drop a .wasm component first.");
    return;
  }
  if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(id)) {
    say(status, "An agent id is 1 to 64 letters, digits, - or _, starting with a letter or digit.");
    $("upload-id").focus();
    return;
  }
  const button = document.querySelector('[data-testid="upload-button"]');
  button.disabled = true;
  say(status, `Installing ${file.name} as ${id}…`);
  try {
    const agent = await conn.http(`/admin/agents/${encodeURIComponent(id)}`, {
      method: "PUT", body: file, headers: { "Content-Type": "application/wasm" },
    });
    say(status, `Installed ${agent.id}: ${agent.name} ${agent.version} (${shortDigest(agent.digest)}).`);
    file = null;
    $("agent-file").value = "";
    $("drop-file").textContent = "";
    $("upload-id").value = "";
  } catch (e) {
    say(status, `Not installed: ${e.message}`);
  } finally {
    button.disabled = false;
  }
  load();
}
