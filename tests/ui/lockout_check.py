"""A client locked out after repeated wrong secrets sees the gateway's
message and when it may retry, counting down; the right secret is refused
too until then. (tests/all/ui.rs allows two failures and does not exempt
loopback.)"""

from common import TOKEN, Page, done, expect, launch, step, sync_playwright

with sync_playwright() as pw:
    browser = launch(pw)
    p = Page(browser)
    p.open()

    step("two wrong secrets: each refused with the gateway's message")
    for _ in range(2):
        p.connect("wrong-secret")
        expect(p.id("connect-error")).to_have_text("unauthorized: gateway token mismatch")
        p.page.evaluate("document.querySelector('[data-testid=connect-error]').textContent = ''")

    step("locked out: even the right secret waits, and the page says how long")
    p.connect(TOKEN)
    error = p.id("connect-error")
    expect(error).to_contain_text("too many failed attempts")
    expect(error).to_contain_text("Retry in")
    first = int(error.get_attribute("data-retry-after"))
    assert 50 <= first <= 60, first
    expect(error).not_to_have_attribute("data-retry-after", str(first))
    assert int(error.get_attribute("data-retry-after")) < first, "the retry time counts down"
    expect(p.id("connection-state")).not_to_have_attribute("data-state", "open")

    p.close()
    browser.close()
done()
