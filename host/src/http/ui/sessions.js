// Sessions: the stored sessions per agent, most recent first
// (`sessions.list`); open one's transcript (`GET /sessions/{key}/history`,
// which carries tool calls), continue it in Chat, or delete it
// (`sessions.delete`: the transcript and the agent's state for it).

import { go } from "./app.js";
import { openSession } from "./chat.js";
import { $, h, say, ago, when, transcriptItems, confirmButton } from "./dom.js";

let conn;
let filter = "";
let opened = null;
const EMPTY = "No stored sessions yet. Chats with a session key are stored.";

export function init(connection) {
  conn = connection;
  $("sessions-agent").addEventListener("change", (e) => {
    filter = e.target.value;
    load();
  });
  $("sessions-refresh").addEventListener("click", load);
  conn.addEventListener("agents.changed", () => { if (conn.open) loadAgents(); });
}

export function show() {
  if (!conn.open) return;
  // Rows from an earlier visit are stale: a press on one would land on a
  // button the fresh list is about to replace.
  $("sessions-body").replaceChildren();
  loadAgents();
  load();
}

async function loadAgents() {
  let agents = [];
  try {
    agents = (await conn.call("agents.list")).agents;
  } catch {
    return;
  }
  const select = $("sessions-agent");
  select.replaceChildren(h("option", { value: "" }, "All agents"),
    ...agents.map((a) => h("option", { value: a.id }, a.id)));
  // Sessions of a removed agent stay listed under "All agents".
  select.value = agents.some((a) => a.id === filter) ? filter : "";
}

async function load() {
  let sessions;
  try {
    sessions = (await conn.call("sessions.list", filter ? { agentId: filter } : {})).sessions;
  } catch (e) {
    say($("sessions-note"), `Could not list sessions: ${e.message}`, "error");
    return;
  }
  const now = Date.now();
  const write = conn.allows("operator.write");
  $("sessions-body").replaceChildren(...sessions.map((s) => row(s, now, write)));
  const note = $("sessions-note");
  if (!sessions.length) say(note, EMPTY, "hint");
  else if (note.textContent === EMPTY) say(note, "");
}

function row(s, now, write) {
  return h("tr", { "data-testid": "session-row", "data-session-key": s.key },
    h("th", { scope: "row" }, h("code", {}, s.key)),
    h("td", { "data-label": "Agent" }, s.agentId),
    h("td", { "data-col": "messages", "data-label": "Messages" }, String(s.messageCount)),
    h("td", { "data-label": "Last activity" }, h("time", { title: when(s.updatedAt) }, ago(s.updatedAt, now))),
    h("td", { class: "actions" },
      h("button", { type: "button", "data-testid": "session-open", onclick: () => open(s.key) }, "Open"),
      h("button", {
        type: "button", "data-testid": "session-continue", disabled: !write,
        onclick: () => { openSession(s.agentId, s.key); go("chat"); },
      }, "Continue in chat"),
      write ? confirmButton("Delete", "Really delete?", "session-delete", () => remove(s.key)) : null));
}

async function open(key) {
  opened = key;
  const view = $("transcript-view");
  view.hidden = false;
  $("transcript-key").textContent = key;
  const list = $("session-transcript");
  list.replaceChildren();
  try {
    const history = await conn.http(`/sessions/${encodeURIComponent(key)}/history`);
    if (opened !== key) return;
    list.replaceChildren(...transcriptItems(history.messages));
  } catch (e) {
    list.replaceChildren(h("li", { class: "msg msg-error", role: "alert" }, e.message));
  }
  view.scrollIntoView({ block: "nearest" });
  $("h-transcript").focus?.();
}

async function remove(key) {
  let outcome;
  try {
    const res = await conn.call("sessions.delete", { key });
    outcome = [res.deleted ? `Deleted ${key}.` : `${key} was already gone.`, "hint"];
  } catch (e) {
    outcome = [`Could not delete ${key}: ${e.message}`, "error"];
  }
  if (opened === key) $("transcript-view").hidden = true;
  await load();
  say($("sessions-note"), ...outcome);
}
