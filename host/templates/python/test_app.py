"""Unit tests: the agent runs natively against a fake gateway. `python -m unittest test_app`"""

import unittest

from app import WitWorld
from wasmclaw_testing import FakeHost, FakeMcpServer
from wit_world.imports import log
from wit_world.imports.wasmclaw_agent_types import ContentPart_Text, Role


class ShoutTest(unittest.TestCase):
    def test_shouts_with_the_configured_suffix_and_counts_turns(self):
        host = FakeHost(config={"suffix": "!!!"})
        self.assertEqual(host.run(WitWorld(), "hello").text(), "HELLO!!!")
        run = host.run(WitWorld(), "again")
        self.assertIsNone(run.error)
        self.assertEqual(run.text(), "AGAIN!!!")
        self.assertEqual(host.state["turns"], b"2")
        self.assertIn((log.Level.INFO, "turn 2 of this session"), run.logs)


class ModelTest(unittest.TestCase):
    def test_asks_the_model_with_the_system_prompt_and_the_history(self):
        host = FakeHost(config={"systemPrompt": "Be brief."}).llm_reply("Paris.").llm_reply("Rome.")
        self.assertEqual(host.run(WitWorld(), "ask: Capital of France?").text(), "Paris.")
        run = host.run(WitWorld(), "ask: And of Italy?")
        self.assertEqual(run.text(), "Rome.")
        sent = run.llm_requests[0].messages
        self.assertEqual([m.role for m in sent], [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER])
        self.assertEqual(sent[0].content, [ContentPart_Text("Be brief.")])
        self.assertEqual(sent[-1].content, [ContentPart_Text("And of Italy?")])


class FetchTest(unittest.TestCase):
    def test_fetches_through_the_gateway_which_adds_the_credential(self):
        url = "https://api.example.com/today"
        host = (FakeHost()
                .http_credential("https://api.example.com", "Authorization", "Bearer k-1")
                .http_response("GET", url, 200, "sunny, your key was Bearer k-1"))
        run = host.run(WitWorld(), f"fetch: {url}")
        self.assertEqual(run.text(), "200 sunny, your key was [REDACTED]")
        sent = run.http_requests[0]
        self.assertEqual((sent.method, sent.url, sent.status), ("GET", url, 200))
        self.assertIn(("authorization", "Bearer k-1"), sent.headers)
        self.assertEqual(sent.injected, ["authorization"])

    def test_a_url_nothing_allows_is_denied_and_said_so(self):
        run = FakeHost().run(WitWorld(), "fetch: https://elsewhere.example/")
        self.assertEqual(run.text(), "cannot fetch https://elsewhere.example/: "
                                     "the gateway does not allow this URL (add it to the agent's http.allow)")
        self.assertIsNone(run.http_requests[0].status)

    def test_what_is_not_a_url_is_said_not_fetched(self):
        run = FakeHost().run(WitWorld(), "fetch: example.com")
        self.assertEqual(run.text(), "cannot fetch example.com: not an http(s) URL: example.com")
        self.assertEqual(run.http_requests, [])


class ToolTest(unittest.TestCase):
    SERVER = "http://127.0.0.1:9100/mcp"

    def host(self) -> FakeHost:
        def divide(args):
            if args["b"] == 0:
                raise ValueError("cannot divide by zero")
            return str(args["a"] / args["b"])

        tools = (FakeMcpServer("calc")
                 .tool("add", "Add two integers", {"type": "object"}, lambda args: str(args["a"] + args["b"]))
                 .tool("divide", "Divide a by b", {"type": "object"}, divide))
        return FakeHost(config={"mcpServer": self.SERVER}).mcp_server(self.SERVER, tools)

    def test_calls_a_tool_of_the_configured_mcp_server_with_the_gateway_credential(self):
        host = self.host().http_credential(self.SERVER, "Authorization", "Bearer mcp-1")
        run = host.run(WitWorld(), 'tool: add {"a": 2, "b": 3}')
        self.assertEqual(run.text(), "5")
        self.assertEqual(run.mcp_calls(), [(self.SERVER, "add", {"a": 2, "b": 3})])
        self.assertTrue(all(r.injected == ["authorization"] for r in run.http_requests))

    def test_a_failing_tool_and_an_unknown_one_are_said(self):
        self.assertEqual(self.host().run(WitWorld(), 'tool: divide {"a": 1, "b": 0}').text(),
                         "divide failed: cannot divide by zero")
        self.assertEqual(self.host().run(WitWorld(), "tool: nope").text(),
                         "cannot call nope: tools/call: Unknown tool: nope")

    def test_a_server_the_gateway_does_not_allow_or_none_at_all(self):
        run = FakeHost(config={"mcpServer": self.SERVER}).run(WitWorld(), "tool: add {}")
        self.assertEqual(run.text(), f"cannot call add: cannot reach {self.SERVER}: "
                                     "the gateway does not allow this URL (add it to the agent's http.allow)")
        self.assertEqual(run.mcp_calls(), [])
        self.assertTrue(FakeHost().run(WitWorld(), "tool: add {}").text().startswith("no MCP server: set config.mcpServer"))


if __name__ == "__main__":
    unittest.main()
