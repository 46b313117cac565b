"""The log as evidence: verify checks every link and signature of the real
LMDB file; rebuild reproduces the live state; applicants' personal data is
encrypted at rest and never reaches the operational log."""

import json
import os
import subprocess
import unittest

from harness import BIN, Node

OLDSCHEMA = os.path.join(BIN, "oldschema")
FORGE = os.path.join(BIN, "forge")
CTL = os.path.join(BIN, "appealctl")
GEN = os.path.join(BIN, "appeal-gen")


def data_file(node):
    return os.path.join(node.dir, "db", "data.mdb")


class Verify(unittest.TestCase):
    def setUp(self):
        self.node = Node("KZ-75", clock="2026-11-27 10:00").start()

    def tearDown(self):
        self.node.cleanup()

    def populate(self):
        receipts = []
        receipts.append(self.node.file("statement", "0002.0001", "Pension", "Aliya Nurlanova",
                                       "900101300126"))
        receipts.append(self.node.file("complaint", "0005.0002", "Heating tariff",
                                       "Timur Akhmetov", "851231400567"))
        receipts.append(self.node.ctl("file", "--type", "report", "--category", "0004.0003",
                                      "--subject", "Bribe", "--anonymous"))
        n = receipts[0]["number"]
        self.node.ctl("assign", n, "--to", "Pension fund office")
        self.node.ctl("extend", n, "--until", "2027-01-15", "--reason", "Archive inquiry")
        self.node.ctl("answer", n, "--outcome", "satisfied", "--text", "Recalculated for Aliya")
        self.node.ctl("close", n)
        self.node.ctl("withdraw", receipts[1]["number"], "--reason", "Resolved")
        return receipts

    def test_verify_passes_and_rebuild_equals_live(self):
        self.populate()
        self.assertEqual(self.node.stop(), 0)
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 0, out)
        self.assertIn("ok: 10 records of 1 origins", out)  # genesis, grant, 8 events
        rc, live = self.node.offline("dump")
        self.assertEqual(rc, 0)
        self.assertGreater(len(live.splitlines()), 20)
        rc, out = self.node.offline("rebuild")
        self.assertEqual(rc, 0, out)
        rc, rebuilt = self.node.offline("dump")
        self.assertEqual(rebuilt, live)
        self.node.start()
        self.assertEqual(self.node.ctl("show", "KZ-75-2026-000001")["status"], "closed")

    def test_older_schema_is_rebuilt_at_start_beyond_the_map(self):
        """A store of the previous schema (an upgrade) has its derived
        tables rebuilt from the log when the node opens it, in one
        transaction that needs more map than the file holds: the node
        asks for it and the result equals what the node had before."""
        self.assertEqual(self.node.stop(), 0)
        # Big transactions leave few free pages to reuse, as a store that
        # grew by replication does.
        p = subprocess.run([GEN, "--data", self.node.dir, "--appeals", "3000"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.node.start()
        before = self.node.ctl("stats", "--by", "status,type")
        self.assertEqual(sum(g["count"] for g in before["groups"]), 3000)
        self.assertEqual(self.node.stop(), 0)
        rc, live = self.node.offline("dump")
        self.assertEqual(rc, 0)
        p = subprocess.run([OLDSCHEMA, "--data", self.node.dir], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.node.start("--map-size", "65536")  # LMDB makes it the file: no room to spare
        self.assertIn("event=rebuilding reason=\"database schema upgrade\"", self.node.log())
        self.assertIn("event=rebuilt", self.node.log())
        self.assertEqual(self.node.ctl("stats", "--by", "status,type")["groups"],
                         before["groups"])
        self.assertEqual(self.node.stop(), 0)
        rc, rebuilt = self.node.offline("dump")
        self.assertEqual(rebuilt, live)
        self.node.start()  # now current: no second rebuild
        self.assertEqual(self.node.log().count("event=rebuilding"), 1)

    def test_flipped_byte_in_the_file_is_named(self):
        receipts = self.populate()
        target = receipts[1]  # a filing in the middle of the log
        self.assertEqual(self.node.stop(), 0)
        record = bytes.fromhex(target["record"])
        with open(data_file(self.node), "r+b") as f:
            data = bytearray(f.read())
            # LMDB copies pages on write: flip the record wherever it is,
            # the live page and any stale copy alike.
            at = data.find(record)
            self.assertGreaterEqual(at, 0, "the record's exact bytes are stored")
            while at >= 0:
                data[at + len(record) // 2] ^= 0x10
                at = data.find(record, at + 1)
            f.seek(0)
            f.write(data)
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 1)
        self.assertIn(f"seq {target['seq']}:", out)
        self.assertIn("FAILED", out)

    def test_record_of_a_revoked_actor_fails_verify(self):
        """verify and replication give one verdict (issue 10 item 3): a
        record whose actor the origin revoked before it, which every peer
        refuses and freezes the origin for, fails verify too."""
        self.populate()
        path = os.path.join(self.node.root, "official.key")
        p = subprocess.run([CTL, "--json", "keygen", "--out", path], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        pub = json.loads(p.stdout)["key"]
        self.node.ctl("grant", pub, "--role", "official")
        self.node.ctl("revoke", pub, "--reason", "key lost")
        self.assertEqual(self.node.stop(), 0)
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 0, out)  # an honest log, a revocation in it, verifies
        # The node is compromised: its key signs for the revoked official.
        p = subprocess.run([FORGE, "--data", self.node.dir, "--actor", pub],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        forged_seq = int(p.stdout.split()[-1])
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 1, out)
        self.assertIn("FAILED", out)
        self.assertIn(f"seq {forged_seq}: its actor was revoked before it", out)
        self.assertIn(f"acts as key {pub[:16]}, revoked at seq {forged_seq - 1}", out)

    def test_personal_data_encrypted_and_not_logged(self):
        self.populate()
        self.assertEqual(self.node.stop(), 0)
        with open(data_file(self.node), "rb") as f:
            stored = f.read()
        secrets = ["Aliya Nurlanova", "900101300126", "Timur Akhmetov", "851231400567",
                   "Heating tariff", "Recalculated for Aliya"]
        for s in secrets:
            self.assertNotIn(s.encode(), stored, f"{s!r} stored in clear")
            self.assertNotIn(s, self.node.log(), f"{s!r} in the operational log")
        self.assertIn("event=appeal_changed", self.node.log())
        self.node.start()
        shown = self.node.ctl("show", "KZ-75-2026-000001")
        self.assertEqual(shown["personal"]["name"], "Aliya Nurlanova")
        self.assertEqual(shown["personal"]["answer_text"], "Recalculated for Aliya")

    def test_key_files_are_private(self):
        for name in ("sign.key", "box.key", "data.key", "admin.key"):
            mode = os.stat(os.path.join(self.node.dir, name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, name)
        self.assertEqual(len(self.node.keys["sign"]), 64)
        self.assertEqual(len(self.node.keys["box"]), 64)
        rc, out = self.node.offline("init", "--jurisdiction", "KZ-75")
        self.assertNotEqual(rc, 0)
        self.assertIn("already an initialised node", out)


if __name__ == "__main__":
    unittest.main()
