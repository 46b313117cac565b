"""Replication between real node processes on loopback: convergence to
identical logs, forwarding across jurisdictions, disk-loss recovery, kill -9
during catch-up, forks, and corrupt copies refused."""

import os
import shutil
import time
import unittest

from harness import federation, identical_logs, wait_for


def file_on(m, n, category="0002.0001", prefix="Appeal"):
    return [m.ctl("file", "--type", "statement", "--category", category, "--subject",
                  f"{prefix} {i} at {m.juris}", "--applicant-name", "Aigerim Bekova",
                  "--applicant-iin", "900101300126")["number"] for i in range(n)]


def converged(fed, codes=None):
    logs = identical_logs(fed, codes)
    first = next(iter(logs.values()))
    return all(v == first for v in logs.values()) and first


class Convergence(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-71", "KZ-75", "KZ-79"])
        self.fed.start()

    def tearDown(self):
        rcs = self.fed.stop()
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def test_nodes_converge_to_identical_logs(self):
        numbers = {}
        for code in ("KZ-71", "KZ-75", "KZ-79"):
            numbers[code] = file_on(self.fed.members[code], 5, prefix="Road")
        for code in ("KZ-71", "KZ-75"):
            m = self.fed.members[code]
            m.ctl("assign", numbers[code][0], "--to", "Roads department")
            m.ctl("answer", numbers[code][1], "--outcome", "explained", "--text", "Explained")
        logs = wait_for(lambda: converged(self.fed), 60, what="convergence")
        self.assertGreaterEqual(logs["KZ-75"][0], 6)
        # The same appeal reads the same everywhere, personal data apart.
        views = [self.fed.members[c].ctl("show", numbers["KZ-71"][1]) for c in self.fed.members]
        for v in views:
            self.assertEqual(v["status"], "answered")
            self.assertEqual(v["owner"], "KZ-71")
            self.assertEqual([h["kind"] for h in v["history"]], ["filed", "answered"])
        self.assertEqual(views[1]["personal"]["name"], "Aigerim Bekova")  # KZ-71 owns it
        for v in views[:1] + views[2:]:
            self.assertIsNone(v["personal"])
            self.assertTrue(v["personal_withheld"])
        # Every node's copy verifies offline too (read-only, while running).
        for m in self.fed.members.values():
            rc, out = m.offline("verify")
            self.assertEqual(rc, 0, out)
            self.assertIn("of 4 origins", out)
        # Every peer answers pulls (records may all have come by push first).
        status = wait_for(lambda: (lambda s: all(p["reachable"] for p in s["peers"]) and s)(
            self.fed.members["KZ"].ctl("cluster", "status")), 30, what="every peer reachable")
        self.assertEqual(status["forks"], [])
        for p in status["peers"]:
            self.assertEqual(p["refused_records"], 0)

    def test_heartbeats_keep_staleness_low(self):
        fed = federation(["KZ", "KZ-71"], heartbeat_ms=500)
        try:
            fed.start()

            def fresh():
                st = fed.members["KZ"].ctl("cluster", "status")
                # Heartbeats when idle 0.5 s, checked about once a second:
                # every origin has written some, and its newest is recent.
                ok = all(o["local_seq"] > 2 and 0 <= o["staleness_ms"] < 4000 and
                         o["lag_records"] == 0 for o in st["origins"])
                return ok and st
            st = wait_for(fresh, 30, what="heartbeats to keep every origin fresh")
            self.assertEqual(len(st["origins"]), 2)
            # Without heartbeats (this class's federation) an idle origin ages.
            st = self.fed.members["KZ"].ctl("cluster", "status")
            ages = [o["staleness_ms"] for o in st["origins"]]
            self.assertTrue(all(a >= 0 for a in ages), ages)
        finally:
            fed.stop()
            fed.kill_all()
            shutil.rmtree(fed.root, ignore_errors=True)

    def test_forwarding_between_jurisdictions(self):
        almaty, astana = self.fed.members["KZ-75"], self.fed.members["KZ-71"]
        number = file_on(almaty, 1)[0]
        almaty.ctl("forward", number, "--to", "KZ-71", "--reason", "Competence of Astana akimat")
        self.assertEqual(almaty.ctl("show", number)["status"], "forwarded")
        incoming = wait_for(
            lambda: [i for i in astana.ctl("list", "--incoming")["items"] if i["number"] == number],
            30, what="the forward to arrive")
        self.assertEqual(incoming[0]["forwarded_to"], "KZ-71")
        # The sender cannot act while it waits; the receiver can accept.
        with self.assertRaises(Exception) as cm:
            almaty.ctl("assign", number, "--to", "x")
        self.assertIn("waits for its acceptance", str(cm.exception))
        r = astana.ctl("accept", number)
        self.assertEqual(r["status"], "registered")
        shown = astana.ctl("show", number)
        self.assertEqual(shown["owner"], "KZ-71")
        self.assertEqual(shown["received_by"], "KZ-75")
        self.assertEqual(shown["personal"]["name"], "Aigerim Bekova")
        self.assertEqual(shown["personal"]["iin"], "900101300126")
        wait_for(lambda: almaty.ctl("show", number)["owner"] == "KZ-71", 30,
                 what="ownership to replicate back")
        self.assertIsNone(almaty.ctl("show", number)["personal"])
        astana.ctl("answer", number, "--outcome", "satisfied", "--text", "Done in Astana")
        wait_for(lambda: self.fed.members["KZ"].ctl("show", number)["status"] == "answered", 30,
                 what="the answer to reach the centre")

    def test_forward_return(self):
        almaty, shym = self.fed.members["KZ-75"], self.fed.members["KZ-79"]
        number = file_on(almaty, 1)[0]
        almaty.ctl("assign", number, "--to", "Akimat")
        almaty.ctl("forward", number, "--to", "KZ-79", "--reason", "Shymkent matter")
        wait_for(lambda: shym.ctl("show", number)["status"] == "forwarded", 30,
                 what="forward to arrive")
        shym.ctl("return", number, "--reason", "Not ours either")
        wait_for(lambda: almaty.ctl("show", number)["status"] == "assigned", 30,
                 what="the return to arrive")
        self.assertEqual(almaty.ctl("show", number)["owner"], "KZ-75")


class Faults(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-71", "KZ-75"])

    def tearDown(self):
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)

    def test_forward_to_a_node_that_is_down(self):
        self.fed.start()
        astana = self.fed.members["KZ-71"]
        self.assertEqual(astana.stop(), 0)
        almaty = self.fed.members["KZ-75"]
        number = file_on(almaty, 1)[0]
        almaty.ctl("forward", number, "--to", "KZ-71", "--reason", "Competence of Astana")
        time.sleep(1)
        astana.start()
        wait_for(lambda: any(i["number"] == number
                             for i in astana.ctl("list", "--incoming")["items"]),
                 30, what="the waiting forward")
        astana.ctl("accept", number)
        wait_for(lambda: almaty.ctl("show", number)["owner"] == "KZ-71", 30, what="acceptance")

    def test_disk_loss_recovery_loses_nothing_and_does_not_fork(self):
        self.fed.start()
        almaty = self.fed.members["KZ-75"]
        numbers = file_on(almaty, 8)
        almaty.ctl("answer", numbers[0], "--outcome", "satisfied", "--text", "Done")
        wait_for(lambda: converged(self.fed), 30, what="convergence before the loss")
        before = almaty.ctl("info")["head_seq"]
        almaty.kill()
        shutil.rmtree(os.path.join(almaty.dir, "db"))  # the disk is lost; keys were backed up
        almaty.start(wait=False)
        almaty.wait_ready()
        wait_for(lambda: almaty.ctl("info")["head_seq"] >= before, 30, what="own log relearned")
        wait_for(lambda: not almaty.ctl("cluster", "status")["recovering"], 30,
                 what="recovery to finish")
        self.assertIn("event=recovered", almaty.log())
        for n in numbers:
            self.assertEqual(almaty.ctl("show", n)["number"], n)
        self.assertEqual(almaty.ctl("show", numbers[0])["status"], "answered")
        new = file_on(almaty, 1)[0]
        self.assertEqual(int(new[-6:]), int(numbers[-1][-6:]) + 1)  # numbering continues
        logs = wait_for(lambda: converged(self.fed), 30, what="convergence after recovery")
        self.assertEqual(logs["KZ-75"][0], before + 1)
        for m in self.fed.members.values():
            st = m.ctl("cluster", "status")
            self.assertEqual(st["forks"], [], m.juris)

    def test_recovering_node_signs_nothing_until_it_has_heard_its_peers(self):
        self.fed.start()
        almaty = self.fed.members["KZ-75"]
        file_on(almaty, 3)
        wait_for(lambda: converged(self.fed), 30, what="convergence")
        for code in ("KZ", "KZ-71"):
            self.assertEqual(self.fed.members[code].stop(), 0)
        almaty.kill()
        shutil.rmtree(os.path.join(almaty.dir, "db"))
        almaty.start()
        with self.assertRaises(Exception) as cm:
            file_on(almaty, 1)
        self.assertIn("recovering", str(cm.exception))
        self.assertTrue(almaty.ctl("cluster", "status")["recovering"])
        self.assertEqual(almaty.ctl("info")["head_seq"], 0)
        for code in ("KZ", "KZ-71"):
            self.fed.members[code].start()
        wait_for(lambda: not almaty.ctl("cluster", "status")["recovering"], 30,
                 what="recovery")
        self.assertEqual(int(file_on(almaty, 1)[0][-6:]), 4)

    def test_kill_during_catch_up_loses_nothing(self):
        self.fed.start()
        kz = self.fed.members["KZ"]
        self.assertEqual(kz.stop(), 0)
        almaty = self.fed.members["KZ-75"]
        for _ in range(4):
            file_on(almaty, 50)
        kz.start()
        wait_for(lambda: self.fed.heads("KZ").get("KZ-75", 0) > 5, 30, what="catch-up to begin")
        kz.kill()  # SIGKILL in the middle of the catch-up
        rc, out = kz.offline("verify")
        self.assertEqual(rc, 0, out)  # no gap, no half-written record
        kz.start()
        wait_for(lambda: converged(self.fed), 60, what="convergence after the kill")
        rc, out = kz.offline("rebuild") if kz.stop() == 0 else (1, "stop failed")
        self.assertEqual(rc, 0, out)

    def test_corrupt_copy_is_refused_and_others_still_serve(self):
        self.fed.start()
        kz, astana, almaty = (self.fed.members[c] for c in ("KZ", "KZ-71", "KZ-75"))
        self.assertEqual(kz.stop(), 0)
        receipts = [almaty.ctl("file", "--type", "request", "--category", "0001.0002",
                               "--subject", f"Archive {i}", "--applicant-name", "A B")
                    for i in range(3)]
        wait_for(lambda: self.fed.heads("KZ-71").get("KZ-75", 0) >= receipts[-1]["seq"], 30,
                 what="Astana to hold Almaty's records")
        # Astana's stored copy of one of Almaty's records gets a flipped byte.
        self.assertEqual(astana.stop(), 0)
        self.assertEqual(almaty.stop(), 0)
        record = bytes.fromhex(receipts[1]["record"])
        path = os.path.join(astana.dir, "db", "data.mdb")
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            at = data.find(record)
            self.assertGreaterEqual(at, 0)
            while at >= 0:
                data[at + len(record) - 10] ^= 0x01  # inside the signature
                at = data.find(record, at + 1)
            f.seek(0)
            f.write(data)
        astana.start()
        kz.start()
        wait_for(lambda: any(p["jurisdiction"] == "KZ-71" and p["refused_records"] > 0
                             for p in kz.ctl("cluster", "status")["peers"]),
                 30, what="the centre to refuse Astana's corrupt batch")
        st = kz.ctl("cluster", "status")
        bad = [p for p in st["peers"] if p["jurisdiction"] == "KZ-71"][0]
        self.assertIn("refused a batch from KZ-71", bad["last_error"])
        self.assertIn("KZ-75", bad["last_error"])
        self.assertLess(self.fed.heads("KZ").get("KZ-75", 0), receipts[1]["seq"])
        self.assertIn("pull_failed", kz.log())
        almaty.start()
        wait_for(lambda: self.fed.heads("KZ").get("KZ-75", 0) >= receipts[-1]["seq"], 30,
                 what="the centre to get Almaty's records from Almaty")
        rc, out = kz.offline("verify")
        self.assertEqual(rc, 0, out)
        self.assertEqual(kz.ctl("show", receipts[1]["number"])["number"], receipts[1]["number"])


class Forks(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-75"])

    def tearDown(self):
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)

    def test_a_restored_copy_that_signs_again_is_a_fork(self):
        self.fed.start()
        kz, almaty = self.fed.members["KZ"], self.fed.members["KZ-75"]
        file_on(almaty, 2)
        self.assertEqual(almaty.stop(), 0)
        backup = almaty.dir + ".bak"
        shutil.copytree(almaty.dir, backup)
        almaty.start()
        file_on(almaty, 2, prefix="Lost")
        wait_for(lambda: converged(self.fed), 30, what="convergence")
        seq = almaty.ctl("info")["head_seq"]
        # An operator restores the old copy by hand (no restore command, so
        # no recovery marker) and the node signs new records at used seqs.
        self.assertEqual(almaty.stop(), 0)
        shutil.rmtree(almaty.dir)
        shutil.copytree(backup, almaty.dir)
        self.assertEqual(kz.stop(), 0)
        almaty.start()
        file_on(almaty, 2, prefix="Forked")
        kz.start()
        forks = wait_for(lambda: kz.ctl("cluster", "status")["forks"], 30,
                         what="the centre to see the fork")
        self.assertEqual(forks[0]["jurisdiction"], "KZ-75")
        self.assertLessEqual(forks[0]["seq"], seq)
        origin = [o for o in kz.ctl("cluster", "status")["origins"] if o["jurisdiction"] == "KZ-75"]
        self.assertTrue(origin[0]["frozen"])
        self.assertIn("level=alert", kz.log())
        self.assertIn("event=fork", kz.log())
        # The forked node learns of it too and stops signing.
        wait_for(lambda: almaty.ctl("cluster", "status")["forks"], 30,
                 what="the forked node to see its own fork")
        with self.assertRaises(Exception) as cm:
            file_on(almaty, 1)
        self.assertIn("frozen", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
