"""Unit tests on a fake gateway: `python -m unittest test_app` (after generating
the bindings: `componentize-py -d wit -w agent bindings .`)."""

import unittest

from app import WitWorld
from componentize_py_types import Err
from wasmclaw_testing import FakeHost
from wit_world.imports.types import AgentError_Failed, Role


class CalcTest(unittest.TestCase):
    def test_arithmetic_is_answered_here_and_counted(self):
        host = FakeHost()
        self.assertEqual(host.run(WitWorld(), "calc: 6 * (3 + 4)").text(), "42")
        self.assertEqual(host.run(WitWorld(), "calc: 1 / 4").text(), "0.25")
        self.assertEqual(host.state["calculations"], b"2")

    def test_anything_else_asks_the_model_with_the_prompt_and_history(self):
        host = FakeHost(config={"systemPrompt": "Be brief."}).llm_reply("Paris.")
        run = host.run(WitWorld(), "Capital of France?")
        self.assertEqual(run.text(), "Paris.")
        sent = run.llm_requests[0].messages
        self.assertEqual((sent[0].role, sent[0].content), (Role.SYSTEM, "Be brief."))
        self.assertEqual(sent[-1].content, "Capital of France?")

    def test_what_it_cannot_evaluate_is_an_agent_error(self):
        run = FakeHost().run(WitWorld(), "calc: __import__('os')")
        self.assertIsInstance(run.error, AgentError_Failed)

    def test_an_exception_is_reported_as_a_panic(self):
        host = FakeHost()
        with self.assertRaises(ZeroDivisionError):
            host.run(WitWorld(), "calc: 1 / 0")


if __name__ == "__main__":
    unittest.main()
