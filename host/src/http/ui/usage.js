// Usage and cost as the host metered them (`usage.get`): a table per agent,
// cost per day over the last two weeks as an SVG bar chart, and what is left
// of each budget the connection may see. Refreshed with the gateway page.

import { $, h, svg } from "./dom.js";

const DAYS = 14;
const DAY_MS = 86400000;

/** Read and draw; errors are shown in place of the figures. */
export async function refresh(conn) {
  const from = new Date(Date.now() - (DAYS - 1) * DAY_MS).toISOString().slice(0, 10);
  try {
    const [agents, days] = await Promise.all([
      conn.call("usage.get", { groupBy: "agent" }),
      conn.call("usage.get", { groupBy: "day", from }),
    ]);
    table(agents.usage);
    chart(days.usage, from);
    budgets(agents.budgets || []);
  } catch (error) {
    $("usage-agents").replaceChildren(h("p", { class: "error" }, `Could not read usage: ${error.message}`));
  }
}

const usd = (n) => `$${Number(n).toFixed(n && n < 0.01 ? 6 : 2)}`;
const count = (n) => Number(n).toLocaleString("en");

function table(rows) {
  if (!rows.length) {
    $("usage-agents").replaceChildren(h("p", { class: "hint" }, "No model calls yet."));
    return;
  }
  const head = h("tr", {}, ...["Agent", "Runs", "Model calls", "Input", "Cached", "Output", "Cost"]
    .map((t) => h("th", { scope: "col" }, t)));
  const body = rows.map((r) => h("tr", { "data-testid": "usage-row", "data-agent-id": r.agent },
    h("td", {}, r.agent), h("td", {}, count(r.runs)),
    h("td", {}, r.unmeteredCalls ? `${count(r.llmCalls)} (${count(r.unmeteredCalls)} unmetered)` : count(r.llmCalls)),
    h("td", {}, count(r.inputTokens)), h("td", {}, count(r.cachedInputTokens)), h("td", {}, count(r.outputTokens)),
    h("td", { "data-testid": "usage-cost" }, usd(r.costUsd))));
  $("usage-agents").replaceChildren(h("table", { "data-testid": "usage-table" }, h("thead", {}, head),
    h("tbody", {}, ...body)));
}

/** Cost per day, one bar a day, oldest first; tokens where nothing is priced. */
function chart(rows, from) {
  const byDay = new Map(rows.map((r) => [r.day, r]));
  const start = Date.parse(`${from}T00:00:00Z`);
  const days = Array.from({ length: DAYS }, (_, i) => new Date(start + i * DAY_MS).toISOString().slice(0, 10));
  const priced = rows.some((r) => r.costUsd > 0);
  const value = (r) => (r ? (priced ? r.costUsd : r.inputTokens + r.outputTokens) : 0);
  const top = Math.max(...days.map((d) => value(byDay.get(d))), 0);
  const width = 280;
  const height = 70;
  const step = width / DAYS;
  const bars = days.flatMap((d, i) => {
    const v = value(byDay.get(d));
    if (!v) return [];
    const barH = Math.max(2, (v / top) * (height - 4));
    return [svg("rect", { class: "bar-runs", x: (i * step + 1).toFixed(1), y: (height - barH).toFixed(1),
      width: (step - 2).toFixed(1), height: barH.toFixed(1), "data-day": d },
    svg("title", {}, `${d}: ${priced ? usd(v) : `${count(v)} tokens`}`))];
  });
  const total = days.reduce((s, d) => s + value(byDay.get(d)), 0);
  const label = `${priced ? "Cost" : "Tokens"} per day, last ${DAYS} days: ${priced ? usd(total) : count(total)}`;
  $("usage-days").replaceChildren(h("figure", { class: "chart", "data-testid": "usage-day-chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, preserveAspectRatio: "none" },
      svg("title", {}, label),
      svg("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }), ...bars),
    h("div", { class: "span", "aria-hidden": "true" }, h("span", {}, days[0]), h("span", {}, "today")),
    h("figcaption", { class: "hint", "data-testid": "usage-day-total" }, label)));
}

function budgets(list) {
  if (!list.length) {
    $("usage-budgets").replaceChildren(h("p", { class: "hint" }, "No budgets for this connection."));
    return;
  }
  $("usage-budgets").replaceChildren(h("ul", { class: "budgets" }, ...list.map((b) => {
    const left = Math.round(b.remaining * 100);
    const limits = [b.usd != null ? `${usd(b.spentUsd)} of ${usd(b.usd)}` : null,
      b.tokens != null ? `${count(b.spentTokens)} of ${count(b.tokens)} tokens` : null].filter(Boolean).join(" · ");
    return h("li", { "data-testid": "budget-row", "data-budget": b.name },
      h("strong", {}, b.name), ` ${left}% left this ${b.window === "total" ? "budget" : b.window} · ${limits}`,
      h("meter", { min: 0, max: 1, low: 0.1, optimum: 1, value: b.remaining, "data-testid": "budget-remaining" }));
  })));
}
