// Rollouts (issue 26): per agent with one, the stable and candidate
// versions, the candidate's weight, state and reason, this instance's live
// counts, and promote or roll back (operator.admin only; a read-only
// connection sees no buttons). Drawn from `agents.list` (each agent's
// `rollout`), so it follows `agents.changed` with the agents table. A
// rollout's `shadow` block, when the gateway sends one, shows the shadow
// runs' comparison counts and the latest examples' diffs.

import { $, h, say, shortDigest, shortWhen } from "./dom.js";

const OUTCOMES = ["identical", "changed", "diverged", "failed"];

/** Draw every rollout of `agents`; `act(method, id)` runs a button's call. */
export function draw(agents, admin, act) {
  const cards = agents.filter((a) => a.rollout).map((a) => card(a.id, a.rollout, admin, act));
  $("rollouts").replaceChildren(...(cards.length ? cards : [h("p", { class: "hint" }, "No rollouts.")]));
}

function card(id, r, admin, act) {
  const running = r.state === "running";
  const count = (v, key) => (v?.[key] ?? 0).toLocaleString("en");
  const p95 = (v) => (v?.p95Ms == null ? "—" : `${Math.round(v.p95Ms)} ms`);
  const version = (role, label, v, weight) => h("tr", { "data-testid": `rollout-${role}` },
    h("th", { scope: "row" }, label),
    h("td", { "data-label": "Digest" }, h("code", { title: v.digest }, shortDigest(v.digest))),
    h("td", { "data-label": "Weight", "data-col": "weight" }, weight == null ? "—" : `${weight}%`),
    h("td", { "data-label": "Runs", "data-col": "runs" }, count(v, "runs")),
    h("td", { "data-label": "Errors", "data-col": "errors" }, count(v, "errors")),
    h("td", { "data-label": "p95", "data-col": "p95" }, p95(v)));
  const head = h("tr", {}, ...["Version", "Digest", "Weight", "Runs", "Errors", "p95"]
    .map((t) => h("th", { scope: "col" }, t)));
  const buttons = admin && running ? h("div", { class: "row" },
    h("button", {
      type: "button", class: "primary", "data-testid": "rollout-promote", "aria-label": `Promote ${id}'s candidate`,
      onclick: () => act("agents.rollout.promote", id, "promoted"),
    }, "Promote"),
    h("button", {
      type: "button", class: "danger", "data-testid": "rollout-rollback", "aria-label": `Roll back ${id}'s rollout`,
      onclick: () => act("agents.rollout.rollback", id, "rolled back"),
    }, "Roll back")) : null;
  return h("section", { class: "card rollout", "data-testid": "rollout", "data-agent-id": id, "data-state": r.state },
    h("h3", {}, id, " ", h("span", { class: `state state-${r.state}`, "data-testid": "rollout-state" }, label(r.state))),
    h("p", { class: "hint" }, `Started ${shortWhen(r.startedAt)} by ${r.source}; sticky: ${r.sticky}`,
      r.autoRollback ? `; rolls back on its own after ${r.autoRollback.minRuns} runs` : "",
      r.reason ? h("span", { "data-testid": "rollout-reason" }, `. ${r.reason}`) : null),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {},
      version("stable", "Stable", r.stable, running ? 100 - r.weight : null),
      version("candidate", "Candidate", r.candidate, running ? r.weight : null)))),
    r.shadow ? shadow(r.shadow) : null,
    buttons);
}

function label(state) {
  return { running: "running", promoted: "promoted", rolledBack: "rolled back" }[state] || state;
}

/** Shadow runs: how the candidate's output compared with stable's, and the latest examples. */
function shadow(s) {
  const counts = h("p", { "data-testid": "shadow-counts" }, `Shadow runs (sample ${s.sample ?? "?"}): ${s.runs ?? 0} — `,
    ...OUTCOMES.flatMap((o, i) => [i ? ", " : "", h("span", { "data-outcome": o }, `${s[o] ?? 0} ${o}`)]),
    s.skipped ? `; ${s.skipped} skipped while one was in flight` : "");
  return h("div", { class: "shadow", "data-testid": "rollout-shadow" }, counts, ...(s.examples || []).map(example));
}

/** One compared run (`tape::Verdict`): its diff, its first divergent call, or its error. */
function example(e) {
  const where = e.divergence ? ` · diverged at ${e.divergence.call}` : "";
  return h("details", { "data-testid": "shadow-example", "data-outcome": e.outcome },
    h("summary", {}, `${e.outcome} · run ${e.runId}${where}`),
    e.error ? h("p", { class: "error" }, e.error) : null,
    e.diff?.length ? h("pre", { class: "diff" }, e.diff.join("\n"))
      : e.divergence ? sides("Recorded call", e.divergence.recorded, "Candidate's call", e.divergence.new)
      : sides("Stable", e.recorded, "Candidate", e.replayed));
}

function sides(left, a, right, b) {
  return h("div", { class: "sides" },
    h("div", {}, h("strong", {}, left), h("pre", {}, text(a))),
    h("div", {}, h("strong", {}, right), h("pre", {}, text(b))));
}

function text(v) {
  if (v == null) return "—";
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

/** Say how a button's call went. */
export function report(status, id, done, result, error) {
  if (error) say(status, `${id}: ${error.message}`);
  else say(status, `${id}'s rollout ${done}${result?.reason ? `: ${result.reason}` : ""}.`);
}
