"""The fold behind the log (docs/architecture.md, "The fold"): a joining
node appends another origin's records at once and folds them into its
derived tables behind them. While the fold lags, status, /api/status and
query answers say how many records are not yet counted; a crash during
the fold resumes it where its last commit left it, and the tables end
equal to a recount from the records and to a rebuild."""

import datetime
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

import recount
from harness import BIN, wait_for
import fedlib

APPEALS = 1200  # about 3,300 records of KZ-75 for KZ to catch up with


def stats(m, *by):
    return m.ctl("stats", "--by", ",".join(by) if by else "region")


def origin(m, code):
    return [o for o in m.ctl("cluster", "status")["origins"] if o["jurisdiction"] == code][0]


class Fold(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="appeal-fold-")
        self.fed = fedlib.Federation(self.root, ["KZ-75", "KZ"], BIN, heartbeat_ms=600000,
                                     tied=True)
        self.fed.init()
        self.src, self.kz = self.fed.members["KZ-75"], self.fed.members["KZ"]
        subprocess.run([os.path.join(BIN, "appeal-gen"), "--data", self.src.dir, "--appeals",
                        str(APPEALS)], check=True, capture_output=True)
        self.hold = os.path.join(self.root, "hold-fold")
        self.http = f"127.0.0.1:{fedlib.port_block(1)}"
        self.env = {}

    def tearDown(self):
        self.fed.kill_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def start_kz(self, *extra, wait=True, **env):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.kz.start("--http", self.http, "--origin-burst", "0", *extra, wait=wait)
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v

    def expected(self, by):
        appeals = recount.fold(recount.records(os.path.join(BIN, "appeal-node"), self.src.dir))
        return recount.aggregate(appeals, by, self.today)

    def counted(self, by):
        return recount.from_stats(stats(self.kz, *by), by)

    def test_lag_is_reported_and_a_crash_mid_fold_resumes(self):
        self.src.start()
        head = origin(self.src, "KZ-75")["local_seq"]
        self.assertGreater(head, 2 * APPEALS)
        # The fold held still: KZ holds every record, has counted none.
        open(self.hold, "w").close()
        self.start_kz(APPEAL_TEST_FOLD_HOLD=self.hold)
        wait_for(lambda: origin(self.kz, "KZ-75")["local_seq"] == head, what="KZ holds the log")
        o = origin(self.kz, "KZ-75")
        self.assertEqual(o["local_seq"], head)
        self.assertGreater(o["fold_lag_records"], 2 * APPEALS)
        self.assertEqual(o["folded_seq"] + o["fold_lag_records"], head)
        answer = stats(self.kz, "region")
        # (KZ-75 may add a heartbeat meanwhile: a record more, not folded either.)
        self.assertGreaterEqual(answer["sources"]["KZ-75"]["fold_lag_records"],
                                o["fold_lag_records"])
        self.assertEqual([g for g in answer["groups"] if g["region"] == "KZ-75"], [])
        with urllib.request.urlopen(f"http://{self.http}/api/status", timeout=10) as r:
            regions = {x["code"]: x for x in json.load(r)["regions"]}
        self.assertGreaterEqual(regions["KZ-75"]["fold_lag_records"], o["fold_lag_records"])
        # SIGKILL with the whole log appended and nothing folded.
        self.kz.kill()
        os.unlink(self.hold)
        # Restarted, the fold resumes, 100 records a step, and the process
        # dies (as a kill would) after its third step's commit.
        self.start_kz(wait=False, APPEAL_TEST_FOLD_RECORDS="100",
                      APPEAL_TEST_FOLD_EXIT_AFTER="3")
        self.assertEqual(self.kz.proc.wait(timeout=60), 99)
        self.kz.proc = None
        rc, out = self.kz.offline("verify")
        self.assertEqual(rc, 0, out)
        self.start_kz()
        wait_for(lambda: origin(self.kz, "KZ-75")["fold_lag_records"] == 0, what="fold done")
        o = origin(self.kz, "KZ-75")
        self.assertEqual(o["folded_seq"], o["local_seq"])
        self.today = (datetime.date.fromisoformat(self.kz.ctl("info")["today"]) -
                      datetime.date(1970, 1, 1)).days
        for by in (["region", "status"], ["type", "month"], ["category"]):
            self.assertEqual(self.counted(by), self.expected(by), by)
        self.assertEqual(stats(self.kz)["sources"]["KZ-75"]["fold_lag_records"], 0)
        self.assertEqual(self.kz.stop(), 0)
        self.src.stop()
        rc, before = self.kz.offline("dump")
        self.assertEqual(rc, 0, before)
        rc, out = self.kz.offline("rebuild")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.kz.offline("dump")[1], before)

    def test_a_fast_link_is_asked_for_plain_answers(self):
        """zstd costs the serving node more time than a fast link saves
        (docs/protocol.md 5.6): once a large answer came fast, KZ asks for
        plain answers and KZ-75 packs no more; the log arrives whole."""
        self.src.start()
        head = origin(self.src, "KZ-75")["local_seq"]
        batch = 600000  # of about 2 MB of records: the first answer packed and more plain
        # The knob lowers what counts as fast (64 MiB/s), so that loopback
        # under a sanitizer on a busy machine still does.
        self.start_kz("--batch-bytes", str(batch), APPEAL_TEST_PLAIN_BYTES_PER_S="1000000")
        wait_for(lambda: origin(self.kz, "KZ-75")["local_seq"] == head, what="KZ holds the log")
        self.assertRegex(self.kz.log(), r"event=pull_codec peer=KZ-75 bytes_per_s=\d+ asks=plain")
        metrics = self.src.ctl_raw("metrics")[1]
        packed_raw = [float(l.split()[1]) for l in metrics.splitlines()
                      if l.startswith("appeal_wire_raw_bytes_total ")][0]
        # The first answer went packed (zstd is asked for until a link is
        # known fast), then none: the records packed are one answer's.
        self.assertGreater(packed_raw, 0)
        self.assertLess(packed_raw, 2 * batch)
        self.assertEqual(self.kz.stop(), 0)
        rc, out = self.kz.offline("verify")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
