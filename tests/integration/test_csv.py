"""CSV formula injection (issue 10 G). A compromised member signs filings
whose category is a spreadsheet formula with commas, quotes and newlines:
its peers refuse them (a category must have the classifier's syntax on
every record, local or replicated), and where such text is held anyway
(the compromised node's own state) every CSV that appealctl writes quotes
each field (RFC 4180) and neutralises a leading = + - @ tab or CR."""

import csv
import io
import os
import shutil
import subprocess
import unittest

from harness import BIN, federation, wait_for

FORGE = os.path.join(BIN, "forge")
CTL = os.path.join(BIN, "appealctl")
# Printable: only the category syntax refuses them. At most 31 bytes (the
# aggregates' key).
PRINTABLE = ['=HYPERLINK("e.kz/?a,b","x")', "@SUM(1+1)*cmd|x,INJ", '+1,"two"', "-4"]
# With control characters (the text rule refuses these anyway).
CONTROL = ['a,"b"\nthree', "\tTAB,x", "\rCR"]
HOSTILE = PRINTABLE + CONTROL
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_rows(m, *args):
    """appealctl's CSV, bytes as written (no newline translation), parsed."""
    p = subprocess.run([CTL, "--node", m.api, "--key", m.admin_key, *args],
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    return list(csv.reader(io.StringIO(p.stdout.decode(), newline="")))


class CsvInjection(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-75"])
        self.fed.start()

    def tearDown(self):
        rcs = self.fed.stop()
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def forge(self, categories):
        almaty = self.fed.members["KZ-75"]
        self.assertEqual(almaty.stop(), 0)
        numbers = []
        for category in categories:
            p = subprocess.run([FORGE, "--data", almaty.dir, "--category", category],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            numbers.append(p.stdout.split()[-1])
        almaty.start()
        return numbers

    def test_hostile_categories_refused_by_peers_and_quoted_in_csv(self):
        kz, almaty = self.fed.members["KZ"], self.fed.members["KZ-75"]
        almaty.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                   "Honest filing", "--applicant-name", "A B")
        self.fed.wait_converged()
        before = almaty.ctl("info")["head_seq"]
        numbers = self.forge(PRINTABLE)
        # The peer refuses the first forged filing, and so everything after.
        def refused():
            st = kz.ctl("cluster", "status")
            peer = [p for p in st["peers"] if p["jurisdiction"] == "KZ-75"][0]
            return peer["refused_records"] > 0 and st
        st = wait_for(refused, 60, what="KZ to refuse the forged filings")
        origin = [o for o in st["origins"] if o["jurisdiction"] == "KZ-75"][0]
        self.assertEqual(origin["local_seq"], before)
        for number in numbers:
            with self.assertRaises(Exception):
                kz.ctl("show", number)
        self.assertIn("category is not a classifier code", kz.log() + "".join(
            p.get("last_error", "") for p in st["peers"]))
        self.forge(CONTROL)
        # The compromised node holds them: its CSVs keep every value in its
        # column, neutralised.
        expected = {"0002.0001"} | {("'" + c if c.startswith(FORMULA_START) else c)
                                     for c in HOSTILE}
        for args in (("stats", "--by", "category", "--csv"),
                     ("export", "--by", "category", "--min-group", "1")):
            rows = csv_rows(almaty, *args)
            header, body = rows[0], rows[1:]
            self.assertEqual(header[:2], ["category", "count"], args)
            self.assertEqual(len(body), len(expected), (args, rows))
            for row in body:
                self.assertEqual(len(row), len(header), (args, row))
                self.assertFalse(any(cell.startswith(FORMULA_START) for cell in row),
                                 (args, row))
                self.assertEqual(row[1], "1", (args, row))
            self.assertEqual({row[0] for row in body}, expected, args)


if __name__ == "__main__":
    unittest.main()
