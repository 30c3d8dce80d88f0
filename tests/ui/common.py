"""What every control-page check shares: the gateway under test (from the
environment the Rust test sets), a headless Debian Chromium driven by
Playwright, and small helpers. The secret comes from the environment, never
from the command line, and never goes into a URL."""

import json
import os
import sys
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright  # noqa: F401  (re-exported)

URL = os.environ["WASMCLAW_UI_URL"]
TOKEN = os.environ["WASMCLAW_UI_TOKEN"]
SHOTS = os.environ.get("WASMCLAW_UI_SCREENSHOTS", "target/ui-screenshots")
CHROMIUM = os.environ.get("WASMCLAW_UI_CHROMIUM", "/usr/bin/chromium")

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Generous: on two busy cores (CI runs the whole suite at once) a debug gateway
# and a browser are slow; a condition that holds returns at once, so only a
# failure waits this long.
expect.set_options(timeout=30_000)


def launch(p):
    """Debian's Chromium, headless (Playwright adds --no-sandbox when run as root)."""
    return p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])


class Page:
    """A browser page that fails the check on any script error of the page."""

    def __init__(self, browser, viewport=DESKTOP, phone=False):
        self.context = browser.new_context(
            viewport=viewport, is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1
        )
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None,
        )
        self.page.set_default_timeout(30_000)

    def id(self, testid):
        return self.page.get_by_test_id(testid)

    def open(self, path="/ui"):
        self.page.goto(URL + path)

    def connect(self, secret=TOKEN):
        self.id("token-input").fill(secret)
        self.id("connect-button").click()

    def connected(self):
        expect(self.id("connection-state")).to_have_attribute("data-state", "open")

    def nav(self, name):
        self.id(f"nav-{name}").click()
        expect(self.page.locator(f'[data-page="{name}"]')).to_be_visible()

    def assert_clean(self):
        assert not self.errors, "\n".join(self.errors)

    def close(self):
        self.assert_clean()
        self.context.close()


def admin(method, path, body=None, headers=None):
    """A request to the gateway's HTTP API with the token, as another client would make it."""
    req = urllib.request.Request(URL + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def step(name):
    print(f"-- {name}", flush=True)


def done():
    print("all checks passed", flush=True)
    sys.exit(0)
