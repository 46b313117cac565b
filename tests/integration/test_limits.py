"""Limits (docs/operations.md "Limits"): live queries have a bounded queue of
their own and a per-key limit, so they never starve the client API, and
shutdown cancels them; connections are capped and idle or stalled ones
closed, per listener, so the node keeps serving the rest."""

import json
import os
import shutil
import signal
import subprocess
import time
import unittest

from harness import CTL, federation, wait_for

LIVE_QUERIES_MAX = 16          # node/bounds.h
LIVE_QUERIES_PER_KEY_MAX = 4   # node/bounds.h


def keygen(path):
    p = subprocess.run([CTL, "--json", "keygen", "--out", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["key"]


class LiveQueries(unittest.TestCase):
    def test_live_flood_leaves_the_api_free_and_shutdown_cancels_it(self):
        fed = federation(["KZ", "KZ-71", "KZ-75"])
        procs = []
        try:
            fed.start()
            kz = fed.members["KZ"]
            keys = []
            for i in range(5):  # the lowest role allowed to query
                path = os.path.join(fed.root, f"registrar{i}.key")
                kz.ctl("grant", keygen(path), "--role", "registrar", "--label", f"r{i}")
                keys.append(path)
            fed.members["KZ-75"].kill()  # every survey waits out its deadline
            # 70 live queries, more than the 64 API contexts: before the
            # live queue they held every context for deadline x count.
            for k in range(70):
                procs.append(subprocess.Popen(
                    [CTL, "--node", kz.api, "--timeout", "120000", "--key", keys[k % 5], "--json",
                     "stats", "--by", "region", "--live", "--deadline-ms", "30000"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            wait_for(lambda: kz.log().count("live_query_queued") >= LIVE_QUERIES_MAX, 60,
                     what="the live queue full")
            refused = wait_for(lambda: [p for p in procs if p.poll() is not None]
                               if sum(p.poll() is not None for p in procs) >= 70 - LIVE_QUERIES_MAX
                               else None, 60, what="the queries past the limits refused")
            outs = [p.stdout.read() for p in refused]
            messages = [json.loads(o).get("error", {}).get("message", o) for o in outs]
            self.assertTrue(any("too many live queries for this key" in m for m in messages),
                            messages)
            self.assertTrue(any("too many live queries on this node" in m for m in messages),
                            messages)
            # The administrator is answered while the live queries wait.
            self.assertEqual(kz.ctl_raw("info", timeout_ms=10000)[0], 0)
            n = kz.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                       "while live queries wait", "--applicant-name", "A B")["number"]
            self.assertTrue(n)
            pending = [p for p in procs if p.poll() is None]
            self.assertEqual(len(pending), LIVE_QUERIES_MAX)
            # SIGTERM cancels them: a clear answer to each, and a prompt stop.
            t0 = time.time()
            self.assertEqual(kz.stop(timeout=60), 0, kz.stderr)
            self.assertLess(time.time() - t0, 15.0)
            answers = [json.loads(p.communicate(timeout=30)[0])["error"]["message"]
                       for p in pending]
            self.assertEqual([m for m in answers if "shutting down" not in m], [])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.communicate()
            fed.stop()
            fed.kill_all()
            shutil.rmtree(fed.root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
