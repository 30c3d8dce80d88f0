"""What the OpenClaw Control UI checks share: the gateway WebSocket's frames
as the page sees them, and waits that let Playwright deliver them."""

import json
import time


class Wire:
    """Every frame of one page's gateway WebSocket(s), decoded."""

    def __init__(self, page):
        self.sent = {}  # request id -> (method, params)
        self.answers = []  # (method, res frame)
        self.events = []
        page.on("websocket", self.attach)

    def attach(self, ws):
        ws.on("framesent", self.on_sent)
        ws.on("framereceived", self.on_received)

    def on_sent(self, payload):
        frame = json.loads(payload)
        if frame.get("type") == "req":
            self.sent[frame["id"]] = (frame["method"], frame.get("params"))

    def on_received(self, payload):
        frame = json.loads(payload)
        if frame.get("type") == "res":
            self.answers.append((self.sent.get(frame["id"], ("?", None))[0], frame))
        elif frame.get("type") == "event" and frame.get("event") != "tick":
            self.events.append(frame)

    def methods(self):
        return sorted({m for m, _ in self.sent.values()})

    def answered(self, method, ok=True):
        return [f for m, f in self.answers if m == method and f["ok"] == ok]

    def connects(self):
        return [p for m, p in self.sent.values() if m == "connect"]

    def hello(self):
        oks = self.answered("connect")
        return oks[-1]["payload"] if oks else None

    def refusals(self):
        return [f["error"] for m, f in self.answers if not f["ok"]]


def wait_for(page, what, probe, timeout=60):
    """Poll `probe` until it is truthy. Playwright delivers frame events only
    while it runs, so the wait is the page's, never a plain sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what}")
