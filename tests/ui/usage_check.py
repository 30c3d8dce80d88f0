"""Gateway page: usage and cost per agent, cost per day as a bar chart, and
what is left of each budget, as the host metered them (issue 25). The
gateway has served three priced runs of `tools` before the page opens."""

import os

from common import SHOTS, Page, done, expect, launch, step, sync_playwright

with sync_playwright() as pw:
    browser = launch(pw)
    p = Page(browser)
    p.open()
    p.connect()
    p.connected()
    p.nav("gateway")

    step("a row per agent with its runs, calls, tokens and exact cost")
    row = p.page.locator('[data-testid="usage-row"][data-agent-id="tools"]')
    expect(row).to_be_visible()
    expect(row.get_by_test_id("usage-cost")).to_have_text("$0.90")
    expect(row).to_contain_text("3,000,000")

    step("cost per day: today's bar, and the total under the chart")
    chart = p.id("usage-day-chart")
    expect(chart.locator("rect[data-day]")).to_have_count(1)
    expect(p.id("usage-day-total")).to_contain_text("$0.90")

    step("each budget with the share it has left")
    budget = p.page.locator('[data-testid="budget-row"][data-budget="agent:tools"]')
    expect(budget).to_contain_text("70% left")
    expect(budget.get_by_test_id("budget-remaining")).to_have_attribute("value", "0.7")

    step("a picture of the usage section (README's docs/usage.png is one of these)")
    os.makedirs(SHOTS, exist_ok=True)
    p.id("usage").screenshot(path=os.path.join(SHOTS, "usage-desktop.png"))

    p.close()
    done()
