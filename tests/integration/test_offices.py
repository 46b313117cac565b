"""Offices under a region (issue 16, items 1 and 4; docs/operations.md
"Offices under a region", docs/record-format.md 7.1 and 8.1).

A federation of the national node, two regions (KZ-75, KZ-71) and two
offices of KZ-75 (its districts Almaly and Bostandyk by their KATO codes).
Offices register appeals under numbers of their own, their records name
them, the national aggregates count them under their region (and, asked,
per office) exactly as a recount of the records does, and an office's
applicants' data is read by the office and its region's node only.
Forwards go between offices and regions as between regions."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import recount
from harness import BIN, NODE, close_federation, federation, wait_for

OFFICE_A, OFFICE_B = "KZ-75.751210000", "KZ-75.751410000"
CODES = ["KZ", "KZ-71", "KZ-75", OFFICE_A, OFFICE_B]
KATO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "data",
                    "kato-sample.tsv")


def raw_store(m):
    with open(os.path.join(m.dir, "db", "data.mdb"), "rb") as f:
        return f.read()


def shown(m, number):
    return json.dumps(m.ctl("show", number), ensure_ascii=False)


class Offices(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(CODES)
        cls.fed.start()
        cls.numbers = {c: [] for c in CODES}
        for code, n in ((OFFICE_A, 3), (OFFICE_B, 2), ("KZ-75", 2), ("KZ-71", 1)):
            for i in range(n):
                m = cls.fed.members[code]
                r = m.ctl("file", "--type", "statement", "--category", "0002.0001",
                          "--subject", f"Street light {code} {i}",
                          "--applicant-name", f"Applicant {i} of {code}")
                cls.numbers[code].append(r["number"])

    @classmethod
    def tearDownClass(cls):
        rcs = cls.fed.stop()
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)
        assert all(rc == 0 for rc in rcs.values()), rcs

    def m(self, code):
        return self.fed.members[code]

    def file(self, code, secret):
        return self.m(code).ctl("file", "--type", "statement", "--category", "0002.0001",
                                "--subject", "Water supply", "--applicant-name", secret,
                                "--applicant-contacts", "+77015550199")["number"]

    def test_offices_number_and_name_their_appeals(self):
        every = [n for ns in self.numbers.values() for n in ns]
        self.assertEqual(len(every), len(set(every)))  # no number twice
        self.assertEqual(self.numbers[OFFICE_A][0][:len(OFFICE_A) + 1], OFFICE_A + "-")
        self.assertTrue(all(n.startswith(OFFICE_B + "-") for n in self.numbers[OFFICE_B]))
        # Each numbering starts at 1: an office's does not take the region's.
        self.assertTrue(self.numbers[OFFICE_A][0].endswith("-000001"))
        self.assertTrue(self.numbers["KZ-75"][0].endswith("-000001"))
        self.fed.wait_converged()
        view = self.m("KZ").ctl("show", self.numbers[OFFICE_B][0])
        self.assertEqual(view["owner"], OFFICE_B)
        self.assertEqual(view["received_by"], OFFICE_B)
        filed = [r for r in recount.records(NODE, self.m("KZ").dir)
                 if r.get("number") == self.numbers[OFFICE_A][1] and r["kind"] == "filed"]
        self.assertEqual(filed[0]["jurisdiction"], OFFICE_A)

    def test_show_names_the_office(self):
        number = self.numbers[OFFICE_A][0]
        m = self.m("KZ-75")
        wait_for(lambda: m.ctl("show", number), 30, what=f"{number} on KZ-75")
        env = dict(os.environ, APPEAL_KATO=KATO)
        for lang, name in (("ru", "Алмалинский район"), ("kk", "Алмалы ауданы"),
                           ("en", "Almaly District")):
            p = subprocess.run([os.path.join(BIN, "appealctl"), "--node", m.api, "--key",
                                m.admin_key, "--lang", lang, "show", number],
                               capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(f"{OFFICE_A}: {name}", p.stdout, lang)

    def expected(self, by, keep=lambda a: True):
        appeals = recount.fold(recount.records(NODE, self.m("KZ").dir))
        return recount.aggregate(appeals, by, self.m("KZ").ctl("stats", "--by", "region")
                                 ["today_day"], keep)

    def stats(self, by, *extra):
        return self.m("KZ").ctl("stats", "--by", ",".join(by), *extra)

    def test_national_stats_equal_a_recount(self):
        self.fed.wait_converged()
        for by in (["region"], ["office"], ["region", "office", "status"], ["owner", "region"]):
            with self.subTest(by=by):
                want = self.expected(by)
                self.assertEqual(recount.from_stats(self.stats(by), by), want)
        # The offices count under their region; asked, each on its own.
        regions = recount.from_stats(self.stats(["region"]), ["region"])
        self.assertGreaterEqual(regions[("KZ-75",)]["count"], 7)
        self.assertNotIn((OFFICE_A,), regions)
        offices = recount.from_stats(self.stats(["office"]), ["office"])
        self.assertGreaterEqual(offices[(OFFICE_A,)]["count"], 3)
        self.assertGreaterEqual(offices[(OFFICE_B,)]["count"], 2)
        # A region in a filter takes in its offices; an office only itself.
        under = lambda a: a["region"].split(".")[0] == "KZ-75"
        self.assertEqual(recount.from_stats(self.stats(["office"], "--region", "KZ-75"),
                                            ["office"]), self.expected(["office"], under))
        only = recount.from_stats(self.stats(["office"], "--region", OFFICE_A), ["office"])
        self.assertEqual(list(only), [(OFFICE_A,)])
        # Live: every node answers for what it owns, offices included.
        live = self.stats(["office"], "--live")
        self.assertEqual(live["mode"], "live")
        self.assertEqual(recount.from_stats(live, ["office"]), self.expected(["office"]))

    def test_privacy_stays_regional(self):
        secret = "Zhanar Officeprivate-Sarsenova"
        number = self.file(OFFICE_A, secret)
        for code in CODES:
            wait_for(lambda code=code: self.m(code).ctl("show", number), 30,
                     what=f"{number} on {code}")
        self.assertIn(secret, shown(self.m(OFFICE_A), number))
        self.assertIn(secret, shown(self.m("KZ-75"), number))  # its region's node
        for code in ("KZ", "KZ-71", OFFICE_B):
            view = self.m(code).ctl("show", number)
            self.assertNotIn(secret, json.dumps(view, ensure_ascii=False), code)
            self.assertTrue(view["personal_withheld"], code)
        for code in CODES:  # sealed everywhere, the office's own file included
            raw = raw_store(self.m(code))
            self.assertNotIn(secret.encode(), raw, code)
            self.assertNotIn(b"+77015550199", raw, code)

    def accept(self, code, number):
        wait_for(lambda: self.m(code).ctl("show", number)["status"] == "forwarded", 30,
                 what=f"the forward of {number} to reach {code}")
        self.m(code).ctl("accept", number)

    def wait_owner(self, number, owner, codes):
        for code in codes:
            wait_for(lambda code=code: self.m(code).ctl("show", number)["owner"] == owner, 30,
                     what=f"{number} owned by {owner} on {code}")

    def test_forward_office_to_region_and_region_to_office(self):
        # Office -> its region: the region owns it and reads it as owner.
        up_secret = "Bolat Upwards-Karimov"
        up = self.file(OFFICE_A, up_secret)
        self.m(OFFICE_A).ctl("forward", up, "--to", "KZ-75", "--reason", "District-wide road")
        self.accept("KZ-75", up)
        self.wait_owner(up, "KZ-75", CODES)
        self.assertIn(up_secret, shown(self.m("KZ-75"), up))
        for code in (OFFICE_A, "KZ", "KZ-71"):
            self.assertNotIn(up_secret, shown(self.m(code), up), code)
        # Region -> an office: the office owns it; the region still reads it
        # (the acceptance carries a copy boxed to the region); nobody else.
        down_secret = "Dana Downwards-Omarova"
        down = self.file("KZ-75", down_secret)
        self.m("KZ-75").ctl("forward", down, "--to", OFFICE_B, "--reason", "Local matter")
        self.accept(OFFICE_B, down)
        self.wait_owner(down, OFFICE_B, CODES)
        self.assertIn(down_secret, shown(self.m(OFFICE_B), down))
        self.assertIn(down_secret, shown(self.m("KZ-75"), down))
        for code in (OFFICE_A, "KZ", "KZ-71"):
            self.assertNotIn(down_secret, shown(self.m(code), down), code)
        # Office -> another region: that region owns it, the office's region
        # no longer reads it.
        away_secret = "Erlan Away-Nurlanov"
        away = self.file(OFFICE_B, away_secret)
        self.m(OFFICE_B).ctl("forward", away, "--to", "KZ-71", "--reason", "Astana's matter")
        self.accept("KZ-71", away)
        self.wait_owner(away, "KZ-71", CODES)
        self.assertIn(away_secret, shown(self.m("KZ-71"), away))
        for code in ("KZ-75", OFFICE_B, "KZ"):
            self.assertNotIn(away_secret, shown(self.m(code), away), code)
        owners = recount.from_stats(self.stats(["owner"]), ["owner"])
        self.assertIn((OFFICE_B,), owners)
        pyverify = os.path.join(os.path.dirname(KATO), "..", "pyverify.py")
        for code in CODES:  # both verifiers accept offices' records
            rc, out = self.m(code).offline("verify")
            self.assertEqual(rc, 0, out)
            py = subprocess.run([sys.executable, pyverify, "--data", self.m(code).dir,
                                 "--cluster", self.fed.cluster_file],
                                capture_output=True, text=True)
            self.assertEqual(py.returncode, 0, py.stdout + py.stderr)


class OfficeIdentity(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="appeal-office-")

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def init(self, juris, *extra):
        return subprocess.run([NODE, "init", "--data", os.path.join(self.root, juris),
                               "--jurisdiction", juris, "--peer", "tcp://127.0.0.1:1", *extra],
                              capture_output=True, text=True)

    def test_init_checks_the_kato_code(self):
        ok = self.init("KZ-19.196240000", "--kato", KATO)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("Бескайнарский сельский округ", ok.stdout)
        self.assertIn("node KZ-19.196240000", ok.stdout)
        wrong_region = self.init("KZ-75.196240000", "--kato", KATO)
        self.assertNotEqual(wrong_region.returncode, 0)
        self.assertIn("belongs to KZ-19, not to KZ-75", wrong_region.stderr)
        unknown = self.init("KZ-19.199999000", "--kato", KATO)
        self.assertIn("KATO code 199999000 is not in", unknown.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "KZ-19.199999000")))
        for bad in ("KZ-75.75121000", "KZ-75.000000000", "KZ-ALA.751210000", "KZ-75.7512100001"):
            r = self.init(bad)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn("is not a jurisdiction code", r.stderr, bad)

    def test_an_office_whose_region_is_not_in_the_cluster_file_is_refused(self):
        r = self.init("KZ-19.196240000")
        self.assertEqual(r.returncode, 0, r.stderr)
        cluster = os.path.join(self.root, "cluster.conf")
        with open(cluster, "w") as f:
            f.write(r.stdout)
        run = subprocess.run([NODE, "run", "--data", os.path.join(self.root, "KZ-19.196240000"),
                              "--api", "tcp://127.0.0.1:1", "--cluster", cluster],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("is an office of KZ-19, and the cluster file has no node of KZ-19",
                      run.stderr)


class OverdueUnderARegion(unittest.TestCase):
    """`appealctl overdue --region KZ-75` on the national node lists the
    overdue appeals of KZ-75's offices too, as `stats --region` counts
    them; an office's code lists that office only."""

    def setUp(self):
        self.fed = federation(["KZ", "KZ-75", OFFICE_A])
        kz = self.fed.members["KZ"]
        # The national node's clock 60 days on: every appeal filed now is
        # overdue there.
        kz.clock_file = os.path.join(self.fed.root, "KZ.clock")
        with open(kz.clock_file, "w") as f:
            f.write(str(int(time.time() * 1000) + 60 * 86400 * 1000))
        self.fed.start()

    def tearDown(self):
        close_federation(self, self.fed)

    def test_a_region_takes_in_its_offices(self):
        filed = {}
        for code in ("KZ-75", OFFICE_A):
            filed[code] = self.fed.members[code].ctl(
                "file", "--type", "statement", "--category", "0002.0001", "--subject",
                f"Road repair {code}", "--applicant-name", "Applicant")["number"]
        self.fed.wait_converged()
        kz = self.fed.members["KZ"]
        listed = lambda *a: {i["number"]: i["owner"] for i in kz.ctl("overdue", *a)["items"]}
        self.assertEqual(listed("--region", "KZ-75"),
                         {filed["KZ-75"]: "KZ-75", filed[OFFICE_A]: OFFICE_A})
        self.assertEqual(listed("--region", OFFICE_A), {filed[OFFICE_A]: OFFICE_A})
        self.assertEqual(listed(), {filed["KZ-75"]: "KZ-75", filed[OFFICE_A]: OFFICE_A})
        self.assertEqual(listed("--region", "KZ-71"), {})


if __name__ == "__main__":
    unittest.main()
