// Small DOM and formatting helpers shared by the pages. Text always goes in
// as text nodes (never innerHTML), so nothing an agent or a client sends can
// become markup.

/** Element `tag` with attributes (`class`, `data-*`, `on*` handlers) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** SVG element `tag` with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  append(el, children);
  return el;
}

/** The element with id `id`. */
export const $ = (id) => document.getElementById(id);

/** Show `message` in `el` (hidden when empty); `kind` sets the class. */
export function say(el, message, kind) {
  el.textContent = message || "";
  el.hidden = !message;
  if (kind !== undefined) el.className = kind;
}

/** `sha256:abcdef…` → the first 12 hex digits. */
export function shortDigest(digest) {
  if (!digest) return "—";
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

/** Milliseconds since the epoch → a local date and time. */
export function when(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

/** Milliseconds since the epoch → the time if it is today, else date and time. */
export function shortWhen(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

/** Milliseconds since the epoch → "12 s ago", "3 min ago", … */
export function ago(ms, now = Date.now()) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A duration in milliseconds → "3 d 4 h", "5 min 2 s", … */
export function duration(ms) {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** A random id (crypto.randomUUID needs a secure context; plain HTTP on a LAN is not one). */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A button that asks once more before acting: the first press turns it into
 * "Really …?" until focus leaves it or Escape is pressed, the second one runs
 * `action`. No modal dialogs and no timer, so it works the same with a
 * keyboard, a screen reader, a slow hand or a test on a busy machine.
 */
export function confirmButton(label, confirmLabel, testid, action) {
  let armed = false;
  const button = h("button", { type: "button", class: "danger", "data-testid": testid }, label);
  const disarm = () => { armed = false; button.textContent = label; };
  button.addEventListener("blur", disarm);
  button.addEventListener("keydown", (e) => { if (e.key === "Escape") disarm(); });
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = confirmLabel;
      button.focus();
      return;
    }
    disarm();
    button.disabled = true;
    try { await action(); } finally { button.disabled = false; }
  });
  return button;
}

/** One stored or live message as a transcript item. */
export function messageItem(m) {
  const role = m.role || "assistant";
  if (role === "tool") {
    return h("li", { class: "msg msg-tool-result", "data-role": "tool", "data-testid": "tool-result" },
      h("span", { class: "who" }, `Tool result${m.toolCallId ? ` (${m.toolCallId})` : ""}`),
      h("pre", {}, m.content ?? ""));
  }
  const who = { user: "You", assistant: "Agent", system: "System" }[role] || role;
  const item = h("li", { class: `msg msg-${role === "user" ? "user" : "assistant"}`, "data-role": role },
    h("span", { class: "who" }, who, m.createdAt ? h("time", { class: "time" }, when(m.createdAt)) : null),
    h("div", { class: "text" }, m.content ?? ""));
  return item;
}

/** A tool call, as stored in a transcript or as it streams in. */
export function toolCallItem(call) {
  return h("li", { class: "msg msg-tool", "data-role": "tool-call", "data-testid": "tool-call" },
    h("span", { class: "who" }, `Tool call ${call.name || ""}${call.id ? ` (${call.id})` : ""}`),
    h("pre", { class: "args" }, call.arguments || ""));
}

/** A stored transcript's messages as items, tool calls after the message that made them. */
export function transcriptItems(messages) {
  const items = [];
  for (const m of messages) {
    if (m.role !== "tool" && (m.content || !m.toolCalls?.length)) items.push(messageItem(m));
    for (const call of m.toolCalls || []) items.push(toolCallItem(call));
    if (m.role === "tool") items.push(messageItem(m));
  }
  return items;
}
