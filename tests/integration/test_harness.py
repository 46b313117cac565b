"""The harness itself: a process that a sanitizer stopped at a report
(exit 66 in the TSan build, tests/CMakeLists.txt) fails the test that
started it, even when the test only kills it at teardown."""

import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import BIN, Node, fedlib


def gone_with(status):
    """A process that has already exited with `status` (as a node that
    TSan stopped at its first report exits 66)."""
    p = subprocess.Popen(["sh", "-c", f"exit {status}"], stderr=subprocess.PIPE, text=True)
    p.wait()
    return p


class SanitizerExit(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="appeal-harness-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

    def test_federation_teardown_fails_on_a_member_gone_with_66(self):
        fed = fedlib.Federation(self.root, ["KZ-75", "KZ-71"], BIN, tied=True)
        fed.members["KZ-75"].proc = gone_with(fedlib.SANITIZER_EXIT)
        fed.members["KZ-71"].proc = gone_with(0)
        fed.procs += [m.proc for m in fed.members.values()]
        with self.assertRaisesRegex(AssertionError, r"exited 66 .*sanitizer report"):
            fed.kill_all()
        self.assertTrue(all(m.proc is None for m in fed.members.values()))

    def test_federation_teardown_passes_otherwise(self):
        fed = fedlib.Federation(self.root, ["KZ-75"], BIN, tied=True)
        fed.members["KZ-75"].proc = gone_with(1)  # a node that refused to start
        fed.procs.append(fed.members["KZ-75"].proc)
        fed.kill_all()

    def test_node_kill_fails_on_a_node_gone_with_66(self):
        node = Node(root=self.root)
        node.proc = gone_with(fedlib.SANITIZER_EXIT)
        harness._live.append(node.proc)
        with self.assertRaisesRegex(AssertionError, "KZ-75 exited 66"):
            node.kill()
        self.assertIsNone(node.proc)


if __name__ == "__main__":
    unittest.main()
