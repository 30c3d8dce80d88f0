"""Agents page, rollouts (issue 26): a canary started elsewhere shows up with
both versions, its weight and live counts; promote and roll back from the
page; a rollback decided by `autoRollback` appears without a reload; a
read-only connection sees the rollout and no buttons."""

import base64
import json
import os

from common import Page, admin, done, expect, launch, step, sync_playwright

FAULTS = os.environ["WASMCLAW_UI_FAULTS_WASM"]
READER = os.environ["WASMCLAW_UI_READER_TOKEN"]
CANDIDATE = base64.b64encode(open(FAULTS, "rb").read()).decode()


def start(agent_id, **rules):
    body = {"candidate": {"component": CANDIDATE}, "weight": 50, "sticky": "none", **rules}
    status, res = admin("PUT", f"/admin/agents/{agent_id}/rollout", json_body(body), {"Content-Type": "application/json"})
    assert status == 200, res
    return res


def json_body(value):
    return json.dumps(value).encode()


def turn(agent_id):
    body = {"model": f"agent:{agent_id}", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = admin("POST", "/v1/chat/completions", json_body(body), {"Content-Type": "application/json"})
    return status


def card(p, agent_id):
    return p.page.locator(f'[data-testid="rollout"][data-agent-id="{agent_id}"]')


with sync_playwright() as pw:
    browser = launch(pw)
    p = Page(browser)
    page = p.page
    p.open()
    p.connect()
    p.connected()
    p.nav("agents")
    expect(p.id("rollouts")).to_contain_text("No rollouts.")
    page.evaluate("window.__sameDocument = 42")

    step("a canary started through the admin API appears with both versions and the weight")
    started = start("main")
    main = card(p, "main")
    expect(main).to_have_attribute("data-state", "running")
    expect(main.get_by_test_id("rollout-state")).to_have_text("running")
    stable_digest = started["stable"]["digest"].removeprefix("sha256:")[:12]
    candidate_digest = started["candidate"]["digest"].removeprefix("sha256:")[:12]
    expect(main.get_by_test_id("rollout-stable").locator("code")).to_have_text(stable_digest)
    expect(main.get_by_test_id("rollout-candidate").locator("code")).to_have_text(candidate_digest)
    expect(main.get_by_test_id("rollout-candidate").locator('[data-col="weight"]')).to_have_text("50%")
    expect(main.get_by_test_id("rollout-stable").locator('[data-col="weight"]')).to_have_text("50%")
    expect(main.get_by_test_id("rollout-shadow")).to_have_count(0)

    step("live counts: ten runs are counted on the page without a reload")
    for _ in range(10):
        assert turn("main") == 200
    runs = lambda role: main.get_by_test_id(f"rollout-{role}").locator('[data-col="runs"]')  # noqa: E731
    expect(main).to_have_attribute("data-state", "running")
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="rollout"][data-agent-id="main"] td[data-col="runs"]')]
                 .reduce((n, td) => n + Number(td.textContent), 0) === 10""",
        timeout=30_000,
    )
    print("   stable runs:", runs("stable").text_content(), "candidate runs:", runs("candidate").text_content())

    step("a read-only connection sees the rollout and no buttons")
    reader = Page(browser)
    reader.open()
    reader.connect(READER)
    reader.connected()
    reader.nav("agents")
    expect(card(reader, "main")).to_have_attribute("data-state", "running")
    expect(card(reader, "main").get_by_test_id("rollout-promote")).to_have_count(0)
    expect(card(reader, "main").get_by_test_id("rollout-rollback")).to_have_count(0)

    step("promote from the page: the candidate serves, the state changes (also for the reader)")
    main.get_by_test_id("rollout-promote").click()
    expect(main).to_have_attribute("data-state", "promoted")
    expect(p.id("rollouts-status")).to_contain_text("main's rollout promoted")
    expect(main.get_by_test_id("rollout-promote")).to_have_count(0)
    row = page.locator('[data-testid="agent-row"][data-agent-id="main"]')
    expect(row.locator('[data-col="name"]')).to_have_text("faults")
    expect(card(reader, "main")).to_have_attribute("data-state", "promoted")
    status, res = admin("GET", "/admin/agents/main/rollout")
    assert status == 200 and res["state"] == "promoted", res

    step("roll back from the page: stable keeps serving, the reason names who did it")
    start("other")
    other = card(p, "other")
    expect(other).to_have_attribute("data-state", "running")
    other.get_by_test_id("rollout-rollback").click()
    expect(other).to_have_attribute("data-state", "rolledBack")
    expect(other.get_by_test_id("rollout-reason")).to_contain_text("rolled back by")
    status, res = admin("GET", "/admin/agents/other/rollout")
    assert status == 200 and res["state"] == "rolledBack", res

    step("a rollback decided by autoRollback appears without a reload")
    start("failing", weight=100, autoRollback={"minRuns": 3, "maxErrorRate": 0.5})
    failing = card(p, "failing")
    expect(failing).to_have_attribute("data-state", "running")
    statuses = [turn("failing") for _ in range(3)]
    assert all(s != 200 for s in statuses), statuses
    expect(failing).to_have_attribute("data-state", "rolledBack")
    expect(failing.get_by_test_id("rollout-reason")).to_contain_text("autoRollback.maxErrorRate")
    expect(card(reader, "failing")).to_have_attribute("data-state", "rolledBack")
    expect(failing.get_by_test_id("rollout-rollback")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") == 42, "the page was reloaded"

    step("a rollout's shadow runs: counts and the latest example's diff, from the gateway's own comparison")
    # Weight 0: clients meet the stable echo only; the candidate (the faults
    # fixture, which prefixes its answer with `cand:` here) answers each
    # recorded stable run in the shadow, and the page draws the counts.
    start("shadowed", weight=0, shadow={"sample": 1.0})
    shadowed = card(p, "shadowed")
    block = shadowed.get_by_test_id("rollout-shadow")
    expect(block).to_be_visible()
    for _ in range(3):
        assert turn("shadowed") == 200
    expect(block.get_by_test_id("shadow-counts")).to_contain_text("0 identical")
    expect(block.locator('[data-outcome="changed"]').first).not_to_have_text("0 changed")
    example = block.get_by_test_id("shadow-example").first
    expect(example).to_have_attribute("data-outcome", "changed")
    example.locator("summary").click()
    expect(example.locator("pre.diff")).to_contain_text("cand:hi")
    # A rollout without shadow runs draws no block.
    expect(card(p, "failing").get_by_test_id("rollout-shadow")).to_have_count(0)

    reader.close()
    p.close()
    browser.close()
done()
