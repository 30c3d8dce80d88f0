"""Agents page: the list, installing a component by file input and by drag
and drop, the new agent served in Chat, a refused upload's reason, roll
back, remove, and changes made through the admin API by another client
showing up without a reload."""

import base64
import os

from common import Page, admin, done, expect, launch, step, sync_playwright

ECHO = os.environ["WASMCLAW_UI_ECHO_WASM"]
FAULTS = os.environ["WASMCLAW_UI_FAULTS_WASM"]
NOT_AN_AGENT = os.environ["WASMCLAW_UI_NOT_AN_AGENT_WASM"]


def row(p, agent_id):
    return p.page.locator(f'[data-testid="agent-row"][data-agent-id="{agent_id}"]')


def drop(p, path):
    """Drop `path` on the drop zone the way a browser does: a DataTransfer with one File."""
    data = base64.b64encode(open(path, "rb").read()).decode()
    transfer = p.page.evaluate_handle(
        """([name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "application/wasm" }));
            return dt;
        }""",
        [os.path.basename(path), data],
    )
    zone = p.id("agent-drop")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})


def install(p, agent_id):
    p.id("upload-id").fill(agent_id)
    p.id("upload-button").click()


with sync_playwright() as pw:
    browser = launch(pw)
    p = Page(browser)
    page = p.page
    p.open()
    p.connect()
    p.connected()

    step("the list: id, name, version, digest, source, loaded, in flight, previous")
    p.nav("agents")
    main = row(p, "main")
    expect(main).to_be_visible()
    expect(main.locator('[data-col="name"]')).to_have_text("echo")
    expect(main.locator('[data-col="source"]')).to_have_text("shipped:echo")
    expect(main.locator('[data-col="in-flight"]')).to_have_text("0")
    expect(main.locator('[data-col="previous"]')).to_have_text("—")
    expect(main.get_by_test_id("agent-rollback")).to_be_disabled()
    page.evaluate("window.__sameDocument = 42")

    step("install a component through the file input: listed, then served")
    p.id("agent-upload").set_input_files(ECHO)
    expect(p.id("upload-id")).not_to_have_value("")
    install(p, "uploaded")
    expect(p.id("upload-status")).to_contain_text("Installed uploaded: echo")
    expect(row(p, "uploaded").locator('[data-col="name"]')).to_have_text("echo")
    expect(row(p, "uploaded").locator('[data-col="source"]')).to_contain_text("admin")
    p.nav("chat")
    p.id("agent-select").select_option("uploaded")
    expect(p.id("chat-status")).to_contain_text("agent:uploaded:")
    p.id("chat-input").fill("served by the upload")
    p.id("chat-send").click()
    reply = page.locator('[data-testid="assistant-message"]').last
    expect(reply).to_have_attribute("data-state", "final")
    expect(reply.locator(".text")).to_have_text("served by the upload")

    step("replace it by drag and drop; the old version becomes the rollback target")
    p.nav("agents")
    drop(p, FAULTS)
    expect(p.page.locator("#drop-file")).to_contain_text("wasmclaw_fixture_faults.wasm")
    install(p, "uploaded")
    expect(p.id("upload-status")).to_contain_text("Installed uploaded: faults")
    uploaded = row(p, "uploaded")
    expect(uploaded.locator('[data-col="name"]')).to_have_text("faults")
    expect(uploaded.locator('[data-col="previous"]')).to_contain_text("echo")

    step("roll back")
    uploaded.get_by_test_id("agent-rollback").click()
    expect(p.id("upload-status")).to_contain_text("uploaded rolled back: now echo")
    expect(uploaded.locator('[data-col="name"]')).to_have_text("echo")

    step("a component that is not an agent is refused with the gateway's reason")
    p.id("agent-upload").set_input_files(NOT_AN_AGENT)
    install(p, "broken")
    expect(p.id("upload-status")).to_contain_text("Not installed:")
    print("   refusal:", p.id("upload-status").text_content())
    expect(row(p, "broken")).to_have_count(0)

    step("changes made elsewhere (the admin API) appear without a reload")
    status, body = admin("PUT", "/admin/agents/external", open(ECHO, "rb").read())
    assert status == 200, body
    expect(row(p, "external")).to_be_visible()
    expect(row(p, "external").locator('[data-col="source"]')).to_contain_text("admin")
    expect(p.id("agents-note")).to_contain_text("external installed")
    status, body = admin("DELETE", "/admin/agents/uploaded")
    assert status == 200, body
    expect(row(p, "uploaded")).to_have_count(0)
    expect(p.id("agents-note")).to_contain_text("uploaded removed")
    assert page.evaluate("window.__sameDocument") == 42, "the page was reloaded"

    step("remove from the page (asks once more first)")
    remove = row(p, "external").get_by_test_id("agent-remove")
    remove.click()
    expect(remove).to_have_text("Really remove?")
    remove.click()
    expect(row(p, "external")).to_have_count(0)
    status, _ = admin("GET", "/admin/agents/external")
    assert status == 404, status

    p.close()
    browser.close()
done()
