"""OpenClaw's Control UI shows a sent message once (issue 27): after a send
and the reply, the transcript holds the user's words once and the reply
once, with no pending copy, no "×2" badge and no spinner left — in the tab
that sent it and in a second tab — and that holds, not only at first."""

import os

from common import SHOTS, TOKEN, done, launch, step, sync_playwright
from openclaw_wire import Wire, wait_for

STATIC = os.environ["OPENCLAW_UI_STATIC"]
GATEWAY_WS = os.environ["OPENCLAW_UI_GATEWAY_WS"]
WORDS = "only once, from the OpenClaw Control UI"

# What the UI draws while a send or a run is unsettled, and its repeat badge.
UNSETTLED = [
    ".chat-duplicate-count",
    ".chat-pending-inputs",
    ".chat-working-indicator",
    ".chat-reading-indicator",
    ".chat-group--working",
    ".chat-send-btn--sending",
    ".agent-chat__typing-indicator",
]


def transcript(page):
    """How often the words appear in the user's and the assistant's groups, and what unsettled is shown."""
    return {
        "user": page.locator(".chat-group.user").get_by_text(WORDS).count(),
        "assistant": page.locator(".chat-group.assistant").get_by_text(WORDS).count(),
        "unsettled": [s for s in UNSETTLED if page.locator(s).filter(visible=True).count()],
    }


SETTLED = {"user": 1, "assistant": 1, "unsettled": []}


def settles(page, what):
    """Wait for the settled transcript, then check it stays so for a few seconds."""
    try:
        wait_for(page, what, lambda: transcript(page) == SETTLED, timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}: the transcript shows {transcript(page)}, not {SETTLED}") from None
    finally:
        page.screenshot(path=os.path.join(SHOTS, f"openclaw-control-ui-once-{what.replace(' ', '-')}.png"))
    for _ in range(30):
        page.wait_for_timeout(100)
        now = transcript(page)
        assert now == SETTLED, f"{what}: the transcript changed after it settled: {now}"


with sync_playwright() as pw:
    browser = launch(pw)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    os.makedirs(SHOTS, exist_ok=True)

    step("the UI connects and sends one message")
    first = context.new_page()
    wire = Wire(first)
    first.goto(f"{STATIC}/#gatewayUrl={GATEWAY_WS}&token={TOKEN}")
    first.locator("openclaw-gateway-url-confirmation .btn.primary").click()
    wait_for(first, "hello-ok", wire.hello)
    box = first.get_by_role("textbox", name="Chat composer")
    box.fill(WORDS)
    box.press("Enter")
    wait_for(
        first,
        "the final chat event",
        lambda: [e for e in wire.events if e["event"] == "chat" and e["payload"].get("state") == "final"],
    )

    step("the sending tab shows the message once and the reply once, and nothing pending")
    settles(first, "first tab")

    step("a second tab shows the same")
    second = context.new_page()
    wire2 = Wire(second)
    second.goto(f"{STATIC}/")
    wait_for(second, "the second tab's hello-ok", wire2.hello)
    settles(second, "second tab")

    context.close()
    browser.close()
    done()
