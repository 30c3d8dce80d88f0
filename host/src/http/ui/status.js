// Gateway: health (`health`, and `GET /ready` as a load balancer sees it),
// version, uptime and runs in flight (`status`), and runs and failures per
// agent over the last ten minutes (`metrics.recent`, the gateway's own
// counters) as small SVG bar charts. Refreshed every few seconds while shown.

import { $, h, svg, duration } from "./dom.js";
import * as usage from "./usage.js";

const REFRESH_MS = 3000;
let conn;
let timer = null;

export function init(connection) {
  conn = connection;
}

export function show() {
  if (!conn.open) return;
  clearInterval(timer);
  refresh();
  timer = setInterval(() => { if (conn.open) refresh(); }, REFRESH_MS);
}

export function hide() {
  clearInterval(timer);
}

async function refresh() {
  const [health, status, recent, ready] = await Promise.allSettled([
    conn.call("health"), conn.call("status"), conn.call("metrics.recent"), readiness(),
  ]);
  const value = (r) => (r.status === "fulfilled" ? r.value : null);
  facts(value(health), value(status), value(ready), [health, status].find((r) => r.status === "rejected")?.reason);
  charts(value(recent), recent.status === "rejected" ? recent.reason : null);
  await usage.refresh(conn);
}

/** `/ready` needs no credential; its body says why an instance is not ready. */
async function readiness() {
  const res = await fetch(new URL("/ready", conn.client.url), { cache: "no-store", credentials: "omit" });
  const body = await res.json().catch(() => ({}));
  return body.status || String(res.status);
}

function facts(health, status, ready, error) {
  const hello = conn.client?.hello;
  const items = [
    ["Health", health?.ok ? "ok" : error ? `error: ${error.message}` : "—", "health"],
    ["Readiness", ready ?? "—", "ready"],
    ["Version", status ? `${status.server.name} ${status.server.version}` : "—", "version"],
    ["Uptime", status?.uptimeMs != null ? duration(status.uptimeMs) : "—", "uptime"],
    ["Runs active", status?.runs ? `${status.runs.active} of ${status.runs.max}` : "—", "runs-active"],
    ["Agents", status ? String(status.agents.length) : "—", "agents"],
    ["This connection", hello ? `${hello.auth.scopes.map((s) => s.replace("operator.", "")).join(", ")}` : "—",
      "scopes"],
  ];
  $("gateway-facts").replaceChildren(...items.map(([label, text, key]) =>
    h("div", {}, h("dt", {}, label), h("dd", { "data-testid": `fact-${key}` }, text))));
}

function charts(recent, error) {
  const box = $("charts");
  if (!recent) {
    box.replaceChildren(h("p", { class: "error" }, `Could not read the counters: ${error?.message || "?"}`));
    return;
  }
  const minutes = Math.round((recent.bucketMs * (recent.agents[0]?.runs.length || 60)) / 60000);
  $("charts-note").textContent = `· one bar per ${recent.bucketMs / 1000} s, updated every ${REFRESH_MS / 1000} s`;
  if (!recent.agents.length) {
    box.replaceChildren(h("p", { class: "hint" }, `No runs in the last ${minutes} minutes.`));
    return;
  }
  box.replaceChildren(...recent.agents.map((a) => chart(a, minutes)));
}

/** One agent's bars: runs, with the failed part of each in the failure colour. */
function chart(a, minutes) {
  const runs = a.runs.reduce((x, y) => x + y, 0);
  const failed = a.failures.reduce((x, y) => x + y, 0);
  const label = `${a.agentId}: ${runs} runs, ${failed} failed in the last ${minutes} minutes`;
  const width = 240;
  const height = 60;
  const n = a.runs.length;
  const step = width / n;
  const top = Math.max(1, ...a.runs);
  const bars = [];
  a.runs.forEach((count, i) => {
    if (!count) return;
    const x = (i * step + 0.5).toFixed(1);
    const w = Math.max(1, step - 1).toFixed(1);
    const barH = Math.max(2, (count / top) * (height - 4));
    bars.push(svg("rect", { class: "bar-runs", x, y: (height - barH).toFixed(1), width: w, height: barH.toFixed(1) }));
    const bad = a.failures[i];
    if (bad) {
      const badH = Math.max(2, (bad / top) * (height - 4));
      bars.push(svg("rect", {
        class: "bar-failures", x, y: (height - badH).toFixed(1), width: w, height: badH.toFixed(1),
      }));
    }
  });
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
    preserveAspectRatio: "none" },
  svg("title", {}, label),
  svg("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }),
  ...bars);
  return h("figure", { class: "chart", "data-testid": "agent-chart", "data-agent-id": a.agentId },
    h("h3", {}, a.agentId),
    picture,
    h("div", { class: "span", "aria-hidden": "true" }, h("span", {}, `${minutes} min ago`), h("span", {}, "now")),
    h("figcaption", { class: "hint", "data-testid": "chart-totals" },
      `${runs} runs · ${failed} failed · peak ${top} per ${a.runs.length ? "bar" : "—"}`));
}
