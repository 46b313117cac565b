"""Offices on poor links, at small scale (the 200-node run is `tools/bench
reach`, with the same code: tools/reach.py): the national node and three
regions in a ring, six offices each linked to its region only, one office
cut off before the nodes start and filing offline, then back at 64 kbit/s
with periodic outages. At the end every node holds every record, verify
passes everywhere, the national aggregates equal a recount and no
acknowledged appeal is lost."""

import os
import shutil
import sys
import tempfile
import time
import unittest

from harness import BIN, SOURCE

sys.path.insert(0, os.path.join(SOURCE, "tools"))
import fedlib  # noqa: E402
import reach  # noqa: E402

PER_OFFICE = 4


class Reach(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        root = tempfile.mkdtemp(prefix="appeal-reach-")
        cls.fed = fedlib.Reach(root, BIN, regions=3, offices=6, cut_share=1 / 6,
                               dial=reach.has_dial(SOURCE), dotted=reach.has_offices(BIN),
                               node_args=["--map-size", str(16 << 20)])
        try:
            cls.fed.init()
            cls.result = reach.simulate(cls.fed, per_office=PER_OFFICE, hold_s=3, rate_kbit=64,
                                        outage_every_s=6, outage_s=2, idle_s=0, timeout=120,
                                        log=None)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fed.stop()
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)

    def test_the_cut_office_was_apart_until_its_link_returned(self):
        fed, r = self.fed, self.result
        self.assertEqual(len(fed.cut), 1)
        office = fed.cut[0]
        # KZ held nothing of it while it was cut, and everything at the end
        self.assertEqual(r["kz_cut_before_return"], {office: 0})
        heads = reach.own_heads(fed)
        self.assertGreater(heads[office][0], PER_OFFICE)
        self.assertEqual(reach.origins_of(fed.members[fed.national])[office], heads[office])

    def test_every_node_holds_every_record_and_verifies(self):
        r = self.result
        self.assertEqual(r["failures"], [])
        self.assertEqual(r["nodes"], 10)
        self.assertEqual(r["verified_nodes"], 10)
        self.assertEqual(reach.check_identical(self.fed, reach.own_heads(self.fed)), [])

    def test_nothing_acknowledged_is_lost_and_the_national_aggregates_recount(self):
        r = self.result
        self.assertEqual(r["acknowledged"], 6 * PER_OFFICE)
        self.assertEqual(r["lost"], 0)
        self.assertEqual(r["appeals_on_kz"], 6 * PER_OFFICE)
        figs, bad = reach.check_recount(self.fed, self.result["acked"])
        self.assertEqual(bad, [])

    def test_each_office_dials_only_its_region(self):
        fed = self.fed
        for o, region in fed.parent.items():
            st = fed.members[o].ctl("cluster", "status")
            self.assertEqual([p["jurisdiction"] for p in st["peers"]], [region], o)

    def test_the_cut_link_carried_the_records(self):
        w = self.result["wire"]
        self.assertGreater(w["cut_link_records"], 0)
        self.assertGreater(w["cut_link_bytes"], 0)

    def test_an_idle_slow_link_carries_no_full_marks(self):
        # Converged and idle: each pull and each second's Heads carry only
        # what changed (nothing) and a digest, not every origin's mark
        # (docs/protocol.md 4, 7). Measured per pull the office received,
        # over its proxies (both connections, both ways).
        fed = self.fed
        office = fed.cut[0]

        def sample():
            b = sum(int(p.status().get("bytes_up", 0)) + int(p.status().get("bytes_down", 0))
                    for p in fed.proxies[office])
            pulls = reach.metric_value(fed.members[office], "appeal_pull_batches_total")
            return b, pulls

        b0, p0 = sample()
        b1, p1 = b0, p0
        for _ in range(600):
            b1, p1 = sample()
            if p1 - p0 >= 8:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(p1 - p0, 8)
        per_pull = (b1 - b0) / (p1 - p0)
        # 10 origins: full marks both ways and full Heads would be about
        # 4 KB per pull (measured before compact pulls: 4.1 KB)
        self.assertLess(per_pull, 1500, f"{per_pull:.0f} bytes per idle pull")


if __name__ == "__main__":
    unittest.main()
