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


if __name__ == "__main__":
    unittest.main()
