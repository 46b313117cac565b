"""Links between real nodes cut, delayed and reset by fault proxies: a
partitioned region keeps working and everything converges after healing;
data relays around a cut link."""

import shutil
import time
import unittest

from harness import federation, identical_logs, link, proxied_links, stop_proxies, wait_for


def file_on(m, n, prefix):
    return [m.ctl("file", "--type", "statement", "--category", "0003.0002", "--subject",
                  f"{prefix} {i}", "--applicant-name", "Yerlan Nurgaliyev")["number"]
            for i in range(n)]


def converged(fed, codes=None):
    logs = identical_logs(fed, codes)
    first = next(iter(logs.values()))
    return all(v == first for v in logs.values()) and first


class Partitions(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-71", "KZ-75"])
        self.links = proxied_links(self.fed)
        self.fed.start()

    def tearDown(self):
        rcs = self.fed.stop()
        self.fed.kill_all()
        stop_proxies(self.links)
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def test_partitioned_region_keeps_working_and_converges_after_healing(self):
        kz, astana, almaty = (self.fed.members[c] for c in ("KZ", "KZ-71", "KZ-75"))
        file_on(almaty, 2, "Before")
        wait_for(lambda: converged(self.fed), 30, what="initial convergence")
        link(self.links, "KZ-75", "KZ", "cut")
        link(self.links, "KZ-75", "KZ-71", "cut")
        cut_at_ms = int(time.time() * 1000) + 500
        during = file_on(almaty, 5, "During the partition")   # Almaty keeps registering
        others = file_on(astana, 3, "Astana meanwhile")
        time.sleep(1.5)
        self.assertNotIn(during[-1], [i["number"] for i in kz.ctl("list", "--owner", "KZ-75",
                                                                   "--limit", "1000")["items"]])
        st = kz.ctl("cluster", "status")
        almaty_origin = [o for o in st["origins"] if o["jurisdiction"] == "KZ-75"][0]
        self.assertGreater(almaty_origin["staleness_ms"], 1000)  # the centre sees it is stale

        def almaty_unreachable():
            st = kz.ctl("cluster", "status")
            peer = [p for p in st["peers"] if p["jurisdiction"] == "KZ-75"][0]
            return not peer["reachable"] and peer
        peer = wait_for(almaty_unreachable, 30, what="the centre to see Almaty unreachable")
        self.assertLess(peer["last_ok_ms"], cut_at_ms)
        link(self.links, "KZ-75", "KZ", "heal")
        link(self.links, "KZ-75", "KZ-71", "heal")
        logs = wait_for(lambda: converged(self.fed), 60, what="convergence after healing")
        self.assertEqual(kz.ctl("show", during[-1])["number"], during[-1])
        self.assertEqual(almaty.ctl("show", others[-1])["number"], others[-1])
        self.assertGreaterEqual(logs["KZ-75"][0], 8)
        wait_for(lambda: all(p["reachable"] for p in kz.ctl("cluster", "status")["peers"]), 30,
                 what="peers reachable again")

    def test_data_relays_around_a_cut_link(self):
        kz, astana, almaty = (self.fed.members[c] for c in ("KZ", "KZ-71", "KZ-75"))
        link(self.links, "KZ-75", "KZ", "cut")  # A-C cut; A-B and B-C stand
        numbers = file_on(almaty, 4, "Relayed")
        target = almaty.ctl("info")["head_seq"]
        wait_for(lambda: self.fed.heads("KZ").get("KZ-75", 0) >= target,
                 30, what="Almaty's records to reach the centre through Astana")
        self.assertEqual(kz.ctl("show", numbers[-1])["owner"], "KZ-75")
        rc, out = kz.offline("verify")
        self.assertEqual(rc, 0, out)
        peer = [p for p in kz.ctl("cluster", "status")["peers"] if p["jurisdiction"] == "KZ-71"][0]
        self.assertGreater(peer["records_in"], 0)  # they came from Astana
        link(self.links, "KZ-75", "KZ", "heal")

    def test_slow_and_reset_links_still_converge(self):
        almaty = self.fed.members["KZ-75"]
        link(self.links, "KZ-75", "KZ", "delay", 150)
        file_on(almaty, 3, "Slow link")
        for _ in range(3):
            link(self.links, "KZ-75", "KZ-71", "reset")
            file_on(almaty, 2, "Reset link")
            time.sleep(0.3)
        wait_for(lambda: converged(self.fed), 60, what="convergence over slow, reset links")
        link(self.links, "KZ-75", "KZ", "delay", 0)

    def test_a_hung_link_is_noticed_and_bypassed(self):
        kz, almaty = self.fed.members["KZ"], self.fed.members["KZ-75"]
        link(self.links, "KZ-75", "KZ", "blackhole")
        number = file_on(almaty, 1, "Through the other path")[0]
        wait_for(lambda: kz.ctl("show", number)["number"] == number, 60,
                 what="the record to arrive by the other path")
        link(self.links, "KZ-75", "KZ", "heal")


if __name__ == "__main__":
    unittest.main()
