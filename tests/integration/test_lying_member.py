"""A lying member: a legitimate peer whose every mark claims 10^15 records.

tests/tools/rogue.c in mode `huge-heads` takes the place of KZ-62 with its
real key: it serves valid records (copied from KZ-75) but claims, in pull
answers and in Heads, 10^15 records of every origin. A claim counts only as
far as the claimant proved it with records (docs/protocol.md 7.1), so:

- `appealctl cluster status`, the dashboard's /api/status and the sources of
  `stats` show the true lag (0: the honest nodes hold the same logs);
- the unbacked claim is counted (appeal_unproven_claims_total) and logged
  once per peer and origin (event=unproven_head);
- a restored KZ-75, with the liar among its peers and the default quorum
  (all peers), finishes recovering: the liar leaves the quorum with a
  warning (event=recovery_quorum_dropped)."""

import json
import os
import shutil
import unittest

from harness import federation, free_port, wait_for
from test_operations import http_get, metric
from test_rogue import Rogue, file_on

HUGE = 10 ** 15
ROGUE_SECONDS = 170


def lags(value):
    """Every lag_records anywhere in a JSON value."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "lag_records"] + \
            [x for v in value.values() for x in lags(v)]
    if isinstance(value, list):
        return [x for v in value for x in lags(v)]
    return []


class LyingMember(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-75", "KZ-62"], heartbeat_ms=0)
        self.kz, self.almaty = self.fed.members["KZ"], self.fed.members["KZ-75"]
        self.spare = self.fed.members["KZ-62"]  # never runs: the rogue takes its place
        self.http = free_port()
        self.rogue = None

    def tearDown(self):
        if self.rogue is not None:
            self.rogue.stop()
        self.fed.stop()
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)

    def start_rogue(self):
        args = ["--listen-peer", self.spare.peer,
                "--listen-pub", f"tcp://127.0.0.1:{self.spare.peer_port + 1}",
                "--source", self.almaty.peer, "--mode", "huge-heads",
                "--seconds", str(ROGUE_SECONDS)]
        self.rogue = Rogue(self.fed.root, os.path.join(self.spare.dir, "sign.key"), args, "liar")
        wait_for(lambda: self.rogue.proc.poll() is not None or any(
            line.startswith("ready ") for line in self.rogue.lines()), 30, what="the rogue")
        self.assertIsNone(self.rogue.proc.poll(), self.rogue.stderr())

    def liar_heard(self, member):
        """member has pulled from the liar and taken its heads."""
        st = member.ctl("cluster", "status")
        p = next(p for p in st["peers"] if p["jurisdiction"] == "KZ-62")
        return p["last_ok_ms"] > 0 and len(p["marks"]) > 0 and st

    def assert_true_lag(self, member, what):
        st = member.ctl("cluster", "status")
        for o in st["origins"]:
            self.assertEqual(o["lag_records"], 0, f"{what}: {member.juris} {o}")
            self.assertLess(o["best_known_seq"], HUGE, f"{what}: {member.juris} {o}")
        liar = next(p for p in st["peers"] if p["jurisdiction"] == "KZ-62")
        self.assertTrue(all(m["peer"] < HUGE for m in liar["marks"].values()), liar)
        stats = member.ctl("stats", "--by", "region")
        self.assertEqual(set(lags(stats["sources"])), {0}, f"{what}: {stats['sources']}")

    def test_huge_claims_change_no_lag_and_do_not_hold_a_recovery(self):
        self.kz.start("--http", f"127.0.0.1:{self.http}")
        self.almaty.start()
        file_on(self.almaty, 3, "Before the liar")
        backup = os.path.join(self.fed.root, "almaty.backup")
        rc, out = self.almaty.offline("backup", "--to", backup)
        self.assertEqual(rc, 0, out)
        later = file_on(self.almaty, 3, "After the backup")
        wait_for(lambda: self.fed.converged(["KZ", "KZ-75"])[0], 30, what="convergence")
        self.start_rogue()

        # The lag: true at once, in every view.
        wait_for(lambda: self.liar_heard(self.kz), 30, what="KZ hearing from the liar")
        self.assert_true_lag(self.kz, "KZ")
        status, body = http_get(self.http, "/api/status")
        self.assertEqual(status, 200, body)
        found = lags(json.loads(body))
        self.assertTrue(found, body)
        self.assertEqual(set(found), {0}, body)

        # The unbacked claims: counted and logged once per origin.
        def counted():
            return metric(http_get(self.http, "/metrics")[1], "appeal_unproven_claims_total")
        wait_for(lambda: counted() == 3, 60, what="KZ counting KZ-62's three unbacked claims")
        logged = [line for line in self.kz.log().splitlines()
                  if "event=unproven_head" in line and "peer=KZ-62" in line]
        self.assertEqual(len(logged), 3, logged)
        self.assertTrue(all("claimed=1000000000000000" in line for line in logged), logged)
        self.assert_true_lag(self.kz, "KZ after the discard")

        # A restored KZ-75 relearns its log and signs again, the liar among
        # its peers, with the default quorum (all peers).
        head = self.almaty.ctl("info")["head_seq"]
        self.assertEqual(self.almaty.stop(), 0)
        rc, out = self.almaty.offline("restore", "--from", backup)
        self.assertEqual(rc, 0, out)
        self.almaty.start()
        # Not asserted right after the start: pulls that the liar's heads
        # (every 200 ms) and the connection coming up start at once may have
        # finished the recovery already. The log says it recovered.
        wait_for(lambda: not self.almaty.ctl("cluster", "status")["recovering"], 90,
                 what="KZ-75 recovering with the liar among its peers")
        self.assertIn("event=recovered ", self.almaty.log())
        self.assertGreaterEqual(self.almaty.ctl("info")["head_seq"], head)
        for n in later:
            self.assertEqual(self.almaty.ctl("show", n)["number"], n)
        self.assertIn("event=recovery_quorum_dropped peer=KZ-62", self.almaty.log())
        new = file_on(self.almaty, 1, "After the restore")[0]
        self.assertEqual(int(new[-6:]), max(int(n[-6:]) for n in later) + 1)
        self.assert_true_lag(self.almaty, "KZ-75 after recovery")
        for m in (self.kz, self.almaty):
            self.assertEqual(m.ctl("cluster", "status")["forks"], [], m.juris)


if __name__ == "__main__":
    unittest.main()
