// Chat: pick an agent and a session, send a message with `chat.send` and
// draw the reply from the `chat` events as it streams (tool calls and
// reasoning from the `agent` events), abort with `chat.abort`. A stored
// session's history comes from `GET /sessions/{key}/history`.

import { $, h, say, transcriptItems, messageItem, toolCallItem, uuid } from "./dom.js";

let conn;
let agents = [];
let defaultId = null;
let agentId = null;
let sessionKey = null;
/** Keys made with "New session" that the gateway has not stored yet. */
const fresh = new Set();
/** Keys the gateway has stored, for the current agent. */
let stored = new Set();
/** The run in progress: `{runId, sessionKey, bubble, tools: Map(index → item), reasoning}`. */
let running = null;
/** Bumped on every history load, so a slow answer for an old choice is dropped. */
let loading = 0;
/** A session to open on the next show (set by the Sessions page). */
let requested = null;
/** The agent or session being picked (lists and history loading); a send waits for it. */
let settling = Promise.resolve();
let sending = false;

/** Remember `work` as what a send must wait for. */
function settle(work) {
  settling = work.catch(() => {});
  return settling;
}

/**
 * Run `step` after whatever is settling now, so choices land in the order
 * they were made: a "New session" still listing must not overrule a session
 * picked right after it.
 */
function then(step) {
  return settle(settling.then(step));
}

export function init(connection) {
  conn = connection;
  $("agent-select").addEventListener("change", (e) => {
    const id = e.target.value;
    then(() => selectAgent(id));
  });
  $("session-select").addEventListener("change", (e) => {
    const key = e.target.value;
    then(() => selectSession(key));
  });
  $("new-session").addEventListener("click", newSession);
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === "Escape" && running) {
      abort();
    }
  });
  $("chat-abort").addEventListener("click", abort);
  conn.addEventListener("chat", (e) => onChat(e.detail));
  conn.addEventListener("agent", (e) => onAgent(e.detail));
  conn.addEventListener("agents.changed", () => { if (conn.open) loadAgents(); });
  conn.addEventListener("state", (e) => {
    if (running && e.detail !== "open") finishWithError("The connection dropped, which ends its runs; send again.");
  });
}

/** Open `key` of `agent` on the next show (from the Sessions page). */
export function openSession(agent, key) {
  requested = { agent, key };
}

export function show() {
  if (!conn.open) return;
  settle(prepare()).then(() => $("chat-input").focus());
}

async function prepare() {
  await loadAgents();
  if (requested) {
    const { agent, key } = requested;
    requested = null;
    await selectAgent(agent, key);
  } else if (!agentId) {
    await selectAgent(defaultId && agents.some((a) => a.id === defaultId) ? defaultId : agents[0]?.id);
  }
}

async function loadAgents() {
  try {
    const list = await conn.call("agents.list");
    agents = list.agents;
    defaultId = list.defaultId;
  } catch (e) {
    say($("chat-status"), `Could not list agents: ${e.message}`);
    return;
  }
  const select = $("agent-select");
  select.replaceChildren(...agents.map((a) => h("option", { value: a.id }, `${a.id} — ${a.name} ${a.version}`)));
  if (agentId && agents.some((a) => a.id === agentId)) select.value = agentId;
  else if (agentId) say($("chat-status"), `Agent ${agentId} is no longer served.`);
}

async function selectAgent(id, key) {
  if (!id) return;
  agentId = id;
  $("agent-select").value = id;
  await loadSessions(key || `agent:${id}:main`);
  await selectSession($("session-select").value);
}

/** Fill the session list of the current agent and select `want`. */
async function loadSessions(want) {
  let list = [];
  try {
    list = (await conn.call("sessions.list", { agentId })).sessions;
  } catch (e) {
    say($("chat-status"), `Could not list sessions: ${e.message}`);
  }
  const keys = list.map((s) => s.key);
  stored = new Set(keys);
  for (const key of keys) fresh.delete(key);
  const options = list.map((s) => h("option", { value: s.key }, `${s.key} (${s.messageCount} messages)`));
  const main = `agent:${agentId}:main`;
  for (const key of [...fresh, main]) {
    if (key.startsWith(`agent:${agentId}:`) && !keys.includes(key)) {
      options.unshift(h("option", { value: key }, `${key} (new)`));
      keys.push(key);
    }
  }
  const select = $("session-select");
  select.replaceChildren(...options);
  select.value = keys.includes(want) ? want : main;
}

async function selectSession(key) {
  sessionKey = key;
  // A list refreshed since the choice may show another key.
  $("session-select").value = key;
  const mine = ++loading;
  const list = $("chat-transcript");
  list.replaceChildren();
  if (!stored.has(key)) {
    say($("chat-status"), `New session ${key}: no messages yet.`);
    return;
  }
  try {
    const history = await conn.http(`/sessions/${encodeURIComponent(key)}/history`);
    if (mine !== loading) return;
    list.replaceChildren(...transcriptItems(history.messages));
    say($("chat-status"), `${history.messages.length} messages in ${key}.`);
  } catch (e) {
    if (mine !== loading) return;
    say($("chat-status"), e.status === 404 ? `New session ${key}: no messages yet.` : `History: ${e.message}`);
  }
  scrollDown();
}

function newSession() {
  if (!agentId) return;
  const key = `agent:${agentId}:ui-${uuid().slice(0, 8)}`;
  fresh.add(key);
  then(() => loadSessions(key).then(() => selectSession(key)));
}

async function send() {
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message || running || sending) return;
  // Typed while the agent or session was still loading: it goes where the page lands.
  sending = true;
  try {
    await settling;
  } finally {
    sending = false;
  }
  if (running || !agentId || !sessionKey) return;
  input.value = "";
  const list = $("chat-transcript");
  list.append(messageItem({ role: "user", content: message }));
  const bubble = messageItem({ role: "assistant", content: "" });
  bubble.dataset.state = "streaming";
  bubble.dataset.testid = "assistant-message";
  list.append(bubble);
  running = { runId: null, sessionKey, bubble, tools: new Map(), reasoning: null };
  setRunning(true);
  say($("chat-status"), "Waiting for the agent…");
  scrollDown();
  try {
    const answer = await conn.call("chat.send", { agentId, sessionKey, message, idempotencyKey: uuid() });
    if (running && !running.runId) running.runId = answer.runId;
    if (running) say($("chat-status"), `Running ${answer.runId}…`);
  } catch (e) {
    finishWithError(e.message);
  }
}

async function abort() {
  if (!running) return;
  const { sessionKey: key, runId } = running;
  say($("chat-status"), "Aborting…");
  try {
    const params = runId ? { sessionKey: key, runId } : { sessionKey: key };
    const res = await conn.call("chat.abort", params);
    if (!res.aborted) say($("chat-status"), "Nothing was running any more.");
  } catch (e) {
    say($("chat-status"), `Abort failed: ${e.message}`);
  }
}

/** Events of the run in progress only (another tab's runs share the socket's events). */
function ours(payload) {
  if (!running || payload.sessionKey !== running.sessionKey) return false;
  if (!running.runId) running.runId = payload.runId;
  return payload.runId === running.runId;
}

function onChat(p) {
  if (!ours(p)) return;
  const text = p.message?.content?.map((c) => c.text || "").join("") ?? null;
  const body = running.bubble.querySelector(".text");
  switch (p.state) {
    case "delta":
      body.textContent = text ?? body.textContent + (p.deltaText || "");
      break;
    case "final":
      if (text !== null) body.textContent = text;
      finish("final", p.stopReason === "tool_calls" ? "waiting for tool results" : null, "Done.");
      break;
    case "aborted":
      if (text !== null) body.textContent = text;
      finish("aborted", "aborted", "Aborted: nothing of this turn was stored.");
      break;
    case "error":
      finishWithError(p.errorMessage || "The run failed.");
      break;
  }
  scrollDown();
}

function onAgent(p) {
  if (!ours(p)) return;
  const d = p.data || {};
  if (p.stream === "tool" && d.phase === "start") {
    // A tool the agent runs itself (an MCP server's): its call, then its result.
    const args = typeof d.args === "string" ? d.args : JSON.stringify(d.args ?? {});
    const item = toolCallItem({ id: d.toolCallId, name: d.name, arguments: args });
    running.tools.set(`server:${d.toolCallId}`, item);
    running.bubble.before(item);
  } else if (p.stream === "tool" && d.phase === "result") {
    const result = typeof d.result === "string" ? d.result : JSON.stringify(d.result);
    const item = messageItem({ role: "tool", toolCallId: d.toolCallId, content: result });
    if (d.isError) item.dataset.error = "true";
    running.bubble.before(item);
  } else if (p.stream === "tool") {
    let item = running.tools.get(d.index);
    if (!item) {
      item = toolCallItem({ id: d.toolCallId, name: d.name, arguments: "" });
      running.tools.set(d.index, item);
      running.bubble.before(item);
    }
    item.querySelector(".args").textContent += d.arguments || "";
  } else if (p.stream === "thinking") {
    if (!running.reasoning) {
      running.reasoning = h("pre", {});
      running.bubble.append(h("details", {}, h("summary", {}, "Reasoning"), running.reasoning));
    }
    running.reasoning.textContent = d.text || "";
  }
  scrollDown();
}

function finish(state, tag, status) {
  const { bubble } = running;
  bubble.dataset.state = state;
  if (tag) bubble.querySelector(".who").append(h("span", { class: "tag" }, tag));
  // A reply made only of tool calls needs no empty bubble.
  if (state === "final" && !bubble.querySelector(".text").textContent && running.tools.size) bubble.remove();
  running = null;
  setRunning(false);
  say($("chat-status"), status);
  if (agentId) loadSessions(sessionKey);
}

function finishWithError(message) {
  if (!running) return;
  const { bubble } = running;
  const item = h("li", { class: "msg msg-error", role: "alert", "data-testid": "chat-error" },
    h("span", { class: "who" }, "Error"), h("div", { class: "text" }, message));
  bubble.after(item);
  if (!bubble.querySelector(".text").textContent) bubble.remove();
  running.bubble = item;
  finish("error", null, "The run failed; nothing of this turn was stored.");
}

function setRunning(on) {
  $("chat-abort").disabled = !on;
  document.querySelector('[data-testid="chat-send"]').disabled = on;
}

function scrollDown() {
  const list = $("chat-transcript");
  list.scrollTop = list.scrollHeight;
}
