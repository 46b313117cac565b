"""Storage faults on real nodes: a failed fsync of the store (injected with
the libfailsync.so preload) stops the node's writes with an honest answer;
a member's huge log cannot take the room a replica keeps for its own
filings; a peer's unproven claims of heads do not count as lag."""

import os
import shutil
import unittest

from harness import BIN, Node, NodeError, free_port, wait_for
from test_operations import http_get, metric

SHIM = os.path.join(BIN, "libfailsync.so")


class FailedSync(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(SHIM):
            self.skipTest("libfailsync.so not built")
        self.node = Node("KZ-75")
        self.http = free_port()
        self.trigger = os.path.join(self.node.root, "failsync")

    def tearDown(self):
        self.node.cleanup()

    def start_faulty(self):
        saved = dict(os.environ)
        asan = os.environ.get("ASAN_OPTIONS", "")
        os.environ["LD_PRELOAD"] = SHIM
        os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        os.environ["APPEAL_FAILSYNC_FILE"] = self.trigger
        try:
            self.node.start("--http", f"127.0.0.1:{self.http}")
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def file(self, i):
        return self.node.file("statement", "0002.0001", f"Road repair {i}")["number"]

    def test_failed_sync_stops_writes_and_says_so(self):
        self.start_faulty()
        acked = [self.file(i) for i in range(3)]
        # The commit's own fsync passes; the sync that would make the batch
        # durable (nothing follows it) fails.
        with open(self.trigger, "w") as f:
            f.write("1\n")
        with self.assertRaises(NodeError) as cm:
            self.file(3)
        self.assertEqual(cm.exception.code, "storage_failed")
        self.assertIn("may or may not be durable", cm.exception.message)
        self.assertIn("stopped writing", cm.exception.message)
        self.assertFalse(os.path.exists(self.trigger), "the shim did not fail a sync")
        # Every sync works again (as after a real writeback error), yet the
        # node writes nothing more.
        with self.assertRaises(NodeError) as cm:
            self.file(4)
        self.assertEqual(cm.exception.code, "storage_failed")
        self.assertIn("stopped writing after a failed sync", cm.exception.message)
        status, body = http_get(self.http, "/healthz")
        self.assertEqual(status, 503, body)
        self.assertIn('"status":"storage_failed"', body)
        self.assertIn("writes refused: a sync of the store failed", body)
        status, text = http_get(self.http, "/metrics")
        self.assertEqual(metric(text, "appeal_writes_stopped"), 1)
        wait_for(lambda: metric(http_get(self.http, "/metrics")[1], "appeal_alert",
                                alert="storage_failed", subject="KZ-75") == 1, 20,
                 what="the storage_failed alert")
        self.assertIn("event=writes_stopped", self.node.log())
        self.assertIn("event=sync_failed", self.node.log())
        # The operator restarts it, without the fault: it works, and every
        # appeal it acknowledged is there.
        self.assertEqual(self.node.stop(), 0, self.node.stderr)
        self.node.start("--http", f"127.0.0.1:{self.http}")
        for number in acked:
            self.assertEqual(self.node.ctl("show", number)["number"], number)
        self.file(5)
        status, body = http_get(self.http, "/healthz")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
