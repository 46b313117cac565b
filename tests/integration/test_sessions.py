"""Sessions on the client API (docs/security.md "Sessions"): an official
opens one with a signed request, then sends a counter and a MAC per
request instead of a signature. A replayed request, one with a counter
older than the window, a forged MAC, a request of a revoked key's session
and one of an expired session are refused with a clear message, and write
nothing (the log's head does not move, the log names the refusal)."""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, CTL, Node  # noqa: E402

PROBE = os.path.join(BIN, "sessprobe")
WINDOW = 64  # SESSION_WINDOW, node/base/bounds.h


def keygen(path):
    p = subprocess.run([CTL, "--json", "keygen", "--out", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["key"]


class Probe:
    """One connection (sessprobe), driven a command at a time."""

    def __init__(self, node, key):
        self.p = subprocess.Popen([PROBE, node.url, key], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, command):
        self.p.stdin.write(command + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"sessprobe died: {self.p.stderr.read()}")
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()


class Sessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node("KZ-75")
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.node.stop()
        cls.node.cleanup()
        assert rc == 0, f"node exit {rc}"

    def setUp(self):
        self.probe = Probe(self.node, self.node.admin_key)
        self.addCleanup(self.probe.close)
        self.assertEqual(self.probe("open")["code"], "none")

    def head(self):
        return self.node.info()["head_seq"]

    def filed(self, command):
        r = self.probe(command)
        self.assertEqual(r["code"], "none", r)
        self.assertTrue(r["number"].startswith("KZ-75-"), r)
        return r

    def refused(self, command, words):
        head = self.head()
        r = self.probe(command)
        self.assertEqual(r["code"], "unauthenticated", r)
        self.assertIn(words, r["message"])
        self.assertEqual(self.head(), head, f"a refused request ({command}) wrote something")
        return r

    def test_replayed_request_refused(self):
        self.filed("file 1")
        r = self.refused("replay", "replayed request: counter 1")
        self.assertIn("nothing was done", r["message"])
        self.filed("file 2")
        self.refused("file 2", "replayed request: counter 2")
        self.assertIn("reason=\"replayed request: counter 2", self.node.log())

    def test_reordered_request_refused(self):
        self.filed("file 1")
        self.filed(f"file {1 + WINDOW + 10}")
        # Older than the window: refused, whether or not it was used.
        self.refused("file 2", f"counter 2 is older than the session's window (highest "
                               f"{1 + WINDOW + 10}, window {WINDOW})")
        self.refused("file 1", "older than the session's window")
        # Within the window and never used: a pipelining client's own
        # request checked out of order is accepted once.
        self.filed(f"file {WINDOW + 10}")
        self.refused(f"file {WINDOW + 10}", "replayed request")

    def test_forged_mac_refused_and_does_not_move_the_window(self):
        self.filed("file 1")
        self.refused("forge 2", "bad MAC on a session request")
        self.refused(f"forge {10 * WINDOW}", "bad MAC")
        self.filed("file 2")  # neither forgery took a counter or moved the window
        self.filed("file 3")

    def test_signed_requests_still_work_beside_a_session(self):
        self.filed("file 1")
        self.filed("signed")
        self.filed("file 2")

    def test_pipelined_requests_on_one_connection(self):
        # More requests in flight on one connection than the node has API
        # contexts (256), each answered. The node used to free a context's
        # receipt after its answer was sent, when the context might already
        # run the next waiting request (a double free): it crashed. A
        # session takes up to its window (64) in flight: the contexts may
        # check them in any order, and one older than the window is refused.
        head = self.head()
        for _ in range(3):
            r = self.probe(f"pipeline {WINDOW}")
            self.assertEqual(r["code"], "none", r)
            self.assertEqual(r["message"], f"{WINDOW} receipts")
        signed = Probe(self.node, self.node.admin_key)  # every request signed
        try:
            r = signed("pipeline 300")
            self.assertEqual(r["code"], "none", r)
            self.assertEqual(r["message"], "300 receipts")
        finally:
            signed.close()
        self.assertEqual(self.head(), head + 3 * WINDOW + 300)

    def test_session_is_bound_to_its_connection(self):
        # Another connection opening its own session does not make this
        # one's counters valid there, and closing this one ends its session.
        other = Probe(self.node, self.node.admin_key)
        try:
            self.assertEqual(other("open")["code"], "none")
            self.filed("file 1")
            r = other("file 1")  # the other session's own counter 1: fine
            self.assertEqual(r["code"], "none", r)
        finally:
            other.close()


class RevokedAndExpired(unittest.TestCase):
    def setUp(self):
        self.node = Node("KZ-75")
        self.node.start("--session-ttl-s", "1")
        self.addCleanup(self.node.cleanup)

    def test_session_of_revoked_key_refused(self):
        path = os.path.join(self.node.root, "registrar.key")
        pub = keygen(path)
        self.node.ctl("grant", pub, "--role", "registrar")
        probe = Probe(self.node, path)
        self.addCleanup(probe.close)
        self.assertEqual(probe("open")["code"], "none")
        self.assertEqual(probe("file 1")["code"], "none")
        self.node.ctl("revoke", pub, "--reason", "left the office")
        head = self.node.info()["head_seq"]
        r = probe("file 2")
        self.assertEqual(r["code"], "unauthenticated", r)
        self.assertIn("unknown session (closed, expired, revoked", r["message"])
        self.assertEqual(self.node.info()["head_seq"], head)
        self.assertIn("sessions_ended reason=revoked sessions=1", self.node.log())
        r = probe("open")  # and a new one is refused: the key is revoked
        self.assertEqual(r["code"], "refused", r)
        self.assertIn("was revoked", r["message"])

    def test_expired_session_refused(self):
        probe = Probe(self.node, self.node.admin_key)
        self.addCleanup(probe.close)
        self.assertEqual(probe("open")["code"], "none")
        self.assertEqual(probe("file 1")["code"], "none")
        head = self.node.info()["head_seq"]
        time.sleep(1.3)  # past --session-ttl-s 1 (not a race: expiry only comes later)
        r = probe("file 2")
        self.assertEqual(r["code"], "unauthenticated", r)
        self.assertIn("the session expired (after 1 s): open a new one", r["message"])
        self.assertEqual(self.node.info()["head_seq"], head)
        self.assertEqual(probe("open")["code"], "none")
        self.assertEqual(probe("file 1")["code"], "none")  # a new session counts anew

    def tearDown(self):
        self.assertEqual(self.node.stop(), 0)


if __name__ == "__main__":
    unittest.main()
