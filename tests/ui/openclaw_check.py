"""OpenClaw's own Control UI (the pinned `openclaw` npm package's files,
served by the Rust test on another loopback port) against wasmclaw: the UI
connects with the token from its link, lists sessions and agents, chats with
the echo agent and shows the answer; a second tab of the same browser
connects with the device token the first one was issued (no
AUTH_TOKEN_MISMATCH) and sees the chat; once the test has revoked the
device (with the tab that holds the shared token closed), its open tab is
cut off, its reconnects refused, and a third tab does not connect either. Every method the
UI calls is recorded from the wire: none may be unknown to the gateway.

Talks to the Rust test over stdout/stdin: prints `DEVICE <id>`, then waits
for one line (the test revokes the device meanwhile)."""

import json
import os
import sys

from common import SHOTS, TOKEN, done, expect, launch, step, sync_playwright
from openclaw_wire import Wire, wait_for

STATIC = os.environ["OPENCLAW_UI_STATIC"]
GATEWAY_WS = os.environ["OPENCLAW_UI_GATEWAY_WS"]
WORDS = "hello from the OpenClaw Control UI"


def no_unknown_methods(wire):
    unknown = [e for e in wire.refusals() if "unknown method" in e.get("message", "")]
    assert not unknown, f"the gateway did not know methods the UI calls: {unknown}"


with sync_playwright() as pw:
    browser = launch(pw)
    context = browser.new_context(viewport={"width": 1280, "height": 800})

    step("the UI opens with the gateway and token from its link, and connects")
    first = context.new_page()
    wire = Wire(first)
    # The fragment never reaches a server; the UI asks before switching gateways.
    first.goto(f"{STATIC}/#gatewayUrl={GATEWAY_WS}&token={TOKEN}")
    confirm = first.locator("openclaw-gateway-url-confirmation .btn.primary")
    confirm.click()
    hello = wait_for(first, "hello-ok", wire.hello)
    connect = wire.connects()[-1]
    assert connect["client"]["id"] == "openclaw-control-ui", connect
    assert connect.get("device", {}).get("signature"), f"the UI signed no device proof: {connect}"
    device_id = connect["device"]["id"]
    assert hello["auth"].get("deviceToken"), f"hello-ok issued no device token: {hello['auth']}"
    assert "operator.admin" in hello["auth"]["scopes"], hello["auth"]

    step("it lists sessions (with defaults) and agents (with a model)")
    sessions = wait_for(first, "sessions.list", lambda: wire.answered("sessions.list"))[-1]["payload"]
    assert sessions["defaults"]["model"], sessions
    agents = wait_for(first, "agents.list", lambda: wire.answered("agents.list"))[-1]["payload"]
    assert any(a["id"] == "main" and a["model"]["primary"] for a in agents["agents"]), agents

    step("it chats with the echo agent and shows the answer")
    box = first.get_by_role("textbox", name="Chat composer")
    expect(box).to_be_visible()
    box.fill(WORDS)
    box.press("Enter")
    wait_for(first, "chat.send", lambda: wire.answered("chat.send"))
    wait_for(
        first,
        "the final chat event",
        lambda: [e for e in wire.events if e["event"] == "chat" and e["payload"].get("state") == "final"],
    )
    # The session's subscribers hear of the new messages.
    for event in ("session.message", "sessions.changed"):
        wait_for(first, event, lambda: [e for e in wire.events if e["event"] == event])
    # The agent's echo of the words, drawn as the assistant's message.
    expect(first.locator(".chat-group.assistant").get_by_text(WORDS).first).to_be_visible()
    os.makedirs(SHOTS, exist_ok=True)
    first.screenshot(path=os.path.join(SHOTS, "openclaw-control-ui-chat.png"))
    no_unknown_methods(wire)
    print("METHODS " + " ".join(wire.methods()), flush=True)

    step("a second tab connects with the device token, without the shared token, and sees the chat")
    second = context.new_page()
    wire2 = Wire(second)
    second.goto(f"{STATIC}/")
    hello2 = wait_for(second, "the second tab's hello-ok", wire2.hello)
    connect2 = wire2.connects()[-1]
    assert not connect2.get("auth", {}).get("token"), f"the second tab had the shared token: {connect2['auth']}"
    assert connect2["auth"].get("deviceToken"), connect2["auth"]
    assert not [e for e in wire2.refusals() if "AUTH_TOKEN_MISMATCH" in json.dumps(e)], wire2.refusals()
    listed = wait_for(second, "sessions.list", lambda: wire2.answered("sessions.list"))[0]["payload"]["sessions"]
    assert any(s["key"] == "agent:main:main" for s in listed), listed
    expect(second.locator(".chat-group.user").get_by_text(WORDS).first).to_be_visible()
    expect(second.locator(".chat-group.assistant").get_by_text(WORDS).first).to_be_visible()
    second.screenshot(path=os.path.join(SHOTS, "openclaw-control-ui-second-tab.png"))
    no_unknown_methods(wire2)
    print("METHODS " + " ".join(wire2.methods()), flush=True)

    step("after the device is revoked, its open tabs are cut off and no connect with its token succeeds")
    # The second tab came in by the device token alone. The first also holds the
    # shared token from its link, with which it may rightly pair the device again
    # and share the new token through storage; it is closed so that only the
    # revoked token is left to try.
    first.close()
    hellos2 = len(wire2.answered("connect"))
    print(f"DEVICE {device_id}", flush=True)
    assert sys.stdin.readline().strip() == "revoked"
    # The gateway closes the device's open connections (as OpenClaw's does),
    # and the UI drops the revoked token; a new tab has no other credential.
    mismatch = lambda w: [e for e in w.refusals() if e.get("details", {}).get("code") == "AUTH_DEVICE_TOKEN_MISMATCH"]
    third = context.new_page()
    wire3 = Wire(third)
    third.goto(f"{STATIC}/")
    # Whatever the tabs try meanwhile, none connects.
    third.wait_for_timeout(5000)
    assert wire3.hello() is None, "a tab connected after its device was revoked"
    assert len(wire2.answered("connect")) == hellos2, "the device-token tab connected again after the revocation"
    refused_with_token = [c for c in wire3.connects() if c.get("auth", {}).get("deviceToken")]
    assert len(mismatch(wire3)) >= len(refused_with_token), (wire3.connects(), wire3.refusals())

    context.close()
    browser.close()
    done()
