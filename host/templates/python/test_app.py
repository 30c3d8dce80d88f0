"""Unit tests: the agent runs natively against a fake gateway. `python -m unittest test_app`"""

import unittest

from app import WitWorld
from wasmclaw_testing import FakeHost
from wit_world.imports import log


class ShoutTest(unittest.TestCase):
    def test_shouts_with_the_configured_suffix_and_counts_turns(self):
        host = FakeHost(config={"suffix": "!!!"})
        self.assertEqual(host.run(WitWorld(), "hello").text(), "HELLO!!!")
        run = host.run(WitWorld(), "again")
        self.assertIsNone(run.error)
        self.assertEqual(run.text(), "AGAIN!!!")
        self.assertEqual(host.state["turns"], b"2")
        self.assertIn((log.Level.INFO, "turn 2 of this session"), run.logs)


if __name__ == "__main__":
    unittest.main()
