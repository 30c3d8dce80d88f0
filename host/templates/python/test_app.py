"""Unit tests: the agent runs natively against a fake gateway. `python -m unittest test_app`"""

import unittest

from app import WitWorld
from wasmclaw_testing import FakeHost
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


if __name__ == "__main__":
    unittest.main()
