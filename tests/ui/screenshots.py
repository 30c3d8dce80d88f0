"""Screenshots of every page at desktop and phone widths, for review, under
target/ui-screenshots/ (`<page>-<desktop|phone>.png`). On the way: the
phone layout never scrolls sideways, and every form control has a label."""

import os
import struct

from common import DESKTOP, PHONE, SHOTS, Page, done, expect, launch, step, sync_playwright

PAGES = ["chat", "agents", "sessions", "gateway"]

UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]):not([hidden]), select, textarea')]
    .filter((el) => !el.labels?.length && !el.getAttribute('aria-label'))
    .map((el) => el.id || el.outerHTML)"""


def shoot(p, name, width, viewport, scale):
    path = os.path.join(SHOTS, f"{name}-{width}.png")
    p.page.screenshot(path=path, full_page=True)
    # A full-page shot is as wide as the page's content: wider than the screen
    # means the page scrolls sideways (on a phone, the browser zooms it out).
    with open(path, "rb") as f:
        png_width = struct.unpack(">I", f.read(24)[16:20])[0]
    assert png_width == viewport["width"] * scale, f"{name} is {png_width / scale}px wide at {width} width"
    print("   saved", path)


def tour(browser, viewport, width, phone):
    p = Page(browser, viewport, phone=phone)
    scale = 2 if phone else 1
    page = p.page
    p.open()
    expect(page.locator('[data-page="connect"]')).to_be_visible()
    assert page.evaluate(UNLABELLED) == [], page.evaluate(UNLABELLED)
    shoot(p, "connect", width, viewport, scale)
    p.connect()
    p.connected()
    p.id("chat-input").fill(f"Hello from a {width} screen. How are you today?")
    p.id("chat-send").click()
    expect(page.locator('[data-testid="assistant-message"][data-state="final"]')).to_be_visible()
    for name in PAGES:
        if phone:
            p.id(f"nav-{name}").scroll_into_view_if_needed()
        p.nav(name)
        if name == "agents":
            expect(page.get_by_test_id("agent-row").first).to_be_visible()
        if name == "sessions":
            page.get_by_test_id("session-open").first.click()
            expect(p.id("session-transcript").locator("li").first).to_be_visible()
        if name == "gateway":
            expect(page.get_by_test_id("agent-chart").first).to_be_visible()
            expect(p.id("fact-uptime")).not_to_have_text("—")
        assert page.evaluate(UNLABELLED) == [], page.evaluate(UNLABELLED)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        shoot(p, name, width, viewport, scale)
    p.close()


with sync_playwright() as pw:
    os.makedirs(SHOTS, exist_ok=True)
    browser = launch(pw)
    step("desktop")
    tour(browser, DESKTOP, "desktop", phone=False)
    step("phone")
    tour(browser, PHONE, "phone", phone=True)
    browser.close()
done()
