"""Connect with a wrong then the right token, chat with echo (Enter sends),
watch a slow reply stream in, abort one, see an agent's trap reported, see a
tool call as it happens and its result in the history, open a session's
transcript and continue it in Chat.

Agents (set up by tests/all/ui.rs): main = echo, slow = faults "slow" (one
word per 150 ms), trap = faults "trap", tools = assistant behind the mock
provider, which answers a tool call first and then text."""

import json
import urllib.parse

from common import TOKEN, URL, Page, admin, done, expect, launch, step, sync_playwright


def last_reply(p):
    return p.page.locator('[data-testid="assistant-message"]').last


def send(p, text):
    p.id("chat-input").fill(text)
    p.id("chat-input").press("Enter")


def choose_agent(p, agent):
    p.id("agent-select").select_option(agent)
    expect(p.id("chat-status")).to_contain_text(f"agent:{agent}:")


def new_session(p):
    before = p.id("session-select").input_value()
    p.id("new-session").click()
    expect(p.id("session-select")).not_to_have_value(before)
    expect(p.id("chat-status")).to_contain_text("New session")
    return p.id("session-select").input_value()


def stored(key):
    status, body = admin("GET", f"/sessions/{urllib.parse.quote(key, safe='')}/history")
    return [] if status == 404 else [(m["role"], m["content"]) for m in body["messages"]]


with sync_playwright() as pw:
    browser = launch(pw)
    p = Page(browser)
    page = p.page

    step("the connect page comes first and defaults to this gateway")
    p.open()
    expect(page.locator('[data-page="connect"]')).to_be_visible()
    expect(p.id("url-input")).to_have_value(URL)

    step("a wrong token shows the gateway's message and is not kept")
    p.connect("not-the-token")
    expect(p.id("connect-error")).to_have_text("unauthorized: gateway token mismatch")
    expect(p.id("connection-state")).not_to_have_attribute("data-state", "open")
    assert page.evaluate("sessionStorage.length") == 0

    step("the right token connects; it lives in sessionStorage only, never in the URL")
    p.connect(TOKEN)
    p.connected()
    expect(p.id("connect-error")).to_be_hidden()
    expect(page.locator('[data-page="chat"]')).to_be_visible()
    assert TOKEN not in page.url, page.url
    assert page.evaluate("localStorage.length") == 0
    assert TOKEN in page.evaluate("JSON.stringify(sessionStorage)")
    expect(p.id("agent-select")).to_have_value("main")

    step("chat with echo: Enter sends, the reply arrives through chat events")
    send(p, "hello from the browser")
    expect(last_reply(p)).to_have_attribute("data-state", "final")
    expect(last_reply(p).locator(".text")).to_have_text("hello from the browser")
    expect(p.id("chat-send")).to_be_enabled()
    expect(p.id("chat-abort")).to_be_disabled()

    step("a slow reply streams in word by word")
    choose_agent(p, "slow")
    streamed_key = new_session(p)
    words = "one two three four five six seven eight"
    send(p, words)
    handle = page.wait_for_function(
        """() => {
            const el = [...document.querySelectorAll('[data-testid="assistant-message"]')].pop();
            const text = el && el.querySelector('.text').textContent;
            return el && el.dataset.state === 'streaming' && text.length > 0 ? text : null;
        }"""
    )
    partial = handle.json_value()
    assert words.startswith(partial) and partial != words, f"a partial reply, not {partial!r}"
    expect(last_reply(p)).to_have_attribute("data-state", "final")
    expect(last_reply(p).locator(".text")).to_have_text(words)

    step("abort a slow run: it stops, says so, and stores nothing")
    long = " ".join(f"w{i}" for i in range(60))
    send(p, long)
    expect(p.id("chat-abort")).to_be_enabled()
    # The session has a turn already, so the slow agent starts with "[turn 2] ".
    expect(last_reply(p).locator(".text")).to_contain_text("[turn 2] w0 w1")
    p.id("chat-abort").click()
    expect(last_reply(p)).to_have_attribute("data-state", "aborted")
    expect(last_reply(p)).to_contain_text("aborted")
    expect(p.id("chat-abort")).to_be_disabled()
    cut = last_reply(p).locator(".text").text_content().removeprefix("[turn 2] ").strip()
    assert long.startswith(cut) and cut != long, f"cut short, not {cut!r}"
    assert stored(streamed_key) == [("user", words), ("assistant", words)], stored(streamed_key)

    step("an agent that traps: the gateway's error is shown")
    choose_agent(p, "trap")
    send(p, "boom")
    expect(page.get_by_test_id("chat-error")).to_be_visible()
    error_text = page.get_by_test_id("chat-error").text_content()
    print("   trap reported as:", error_text)
    assert "Error" in error_text and len(error_text) > len("Error"), error_text

    step("a tool the agent runs itself shows its call and its result as they happen")
    choose_agent(p, "shout")
    new_session(p)
    send(p, "hi there")
    expect(last_reply(p)).to_have_attribute("data-state", "final")
    expect(last_reply(p).locator(".text")).to_have_text("shouted hi there")
    server_call = page.get_by_test_id("tool-call").last
    expect(server_call).to_contain_text("shout")
    expect(server_call).to_contain_text('"text":"hi there"')
    expect(page.get_by_test_id("tool-result").last).to_contain_text("HI THERE")

    step("a tool call shows as it happens; its result appears in the history")
    choose_agent(p, "tools")
    tools_key = new_session(p)
    send(p, "What is the weather in Paris?")
    call = page.get_by_test_id("tool-call").last
    expect(call).to_contain_text("get_weather")
    expect(call).to_contain_text('{"city": "Paris"}')
    expect(p.id("chat-send")).to_be_enabled()
    # Another client answers the tool call over HTTP, in the same session.
    tool_call = {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    body = {
        "model": "openclaw:tools",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21 C"},
        ],
    }
    status, answer = admin(
        "POST", "/v1/chat/completions", json.dumps(body).encode(),
        {"Content-Type": "application/json", "x-openclaw-session-key": tools_key},
    )
    assert status == 200, answer
    p.id("new-session").click()
    p.id("session-select").select_option(tools_key)
    expect(page.get_by_test_id("tool-result")).to_contain_text("sunny, 21 C")
    expect(p.id("chat-transcript")).to_contain_text("It is sunny in Paris.")

    step("sessions: most recent first; open a transcript")
    p.nav("sessions")
    rows = page.get_by_test_id("session-row")
    expect(rows.first).to_have_attribute("data-session-key", tools_key)
    main_row = page.locator('[data-testid="session-row"][data-session-key="agent:main:main"]')
    expect(main_row).to_be_visible()
    expect(main_row.locator('[data-col="messages"]')).to_have_text("2")
    main_row.get_by_test_id("session-open").click()
    expect(p.id("transcript-key")).to_have_text("agent:main:main")
    expect(p.id("session-transcript").locator("li")).to_have_count(2)
    expect(p.id("session-transcript")).to_contain_text("hello from the browser")

    step("continue that session in chat, with its history")
    main_row.get_by_test_id("session-continue").click()
    expect(page.locator('[data-page="chat"]')).to_be_visible()
    expect(p.id("agent-select")).to_have_value("main")
    expect(p.id("session-select")).to_have_value("agent:main:main")
    expect(p.id("chat-transcript").locator("li")).to_have_count(2)
    send(p, "again")
    expect(last_reply(p).locator(".text")).to_have_text("[turn 2] again")
    expect(last_reply(p)).to_have_attribute("data-state", "final")

    step("delete a session (asks once more first): gone from the list and from the gateway")
    p.nav("sessions")
    doomed = page.locator(f'[data-testid="session-row"][data-session-key="{streamed_key}"]')
    delete = doomed.get_by_test_id("session-delete")
    delete.click()
    expect(delete).to_have_text("Really delete?")
    delete.click()
    expect(doomed).to_have_count(0)
    expect(p.id("sessions-note")).to_contain_text(f"Deleted {streamed_key}")
    assert stored(streamed_key) == [], stored(streamed_key)

    step("a reload keeps the connection (sessionStorage), and Disconnect forgets it")
    page.reload()
    p.connected()
    expect(page.locator('[data-page="sessions"]')).to_be_visible()
    expect(page.get_by_test_id("session-row").first).to_be_visible()
    p.nav("connect")
    p.id("disconnect-button").click()
    expect(p.id("connection-state")).to_have_attribute("data-state", "idle")
    assert page.evaluate("sessionStorage.length") == 0

    p.close()
    browser.close()
done()
