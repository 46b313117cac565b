"""Appeals through their lifecycle on a real node: every transition, valid
and invalid, the statutory terms, and the filing rules."""

import os
import re
import subprocess
import unittest

from harness import Node, NodeError

# Where each action may start from, and what it leads to (issue 2, the brief).
IN_WORK = {"registered", "assigned", "extended", "reopened"}
ALLOWED = {
    "assign": IN_WORK,
    "extend": IN_WORK,
    "answer": IN_WORK,
    "withdraw": IN_WORK,
    "close": {"answered"},
    "reopen": {"answered", "closed"},
    "accept": set(),  # only a forwarded appeal, on the receiving node
    "return": set(),
}
STATES = ["registered", "assigned", "extended", "answered", "closed", "withdrawn", "reopened"]


class Lifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node("KZ-75", clock="2026-11-27 10:00").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.node.stop()
        cls.node.cleanup()
        assert rc == 0, f"node exited with {rc}"

    def act(self, number, action):
        args = {
            "assign": ["--to", "Department of social protection"],
            "extend": ["--until", "2027-01-15", "--reason", "Expert opinion requested"],
            "answer": ["--outcome", "partly", "--text", "Partly satisfied, see letter"],
            "withdraw": ["--reason", "Applicant withdrew"],
            "reopen": ["--reason", "Complaint against the answer"],
            "close": [], "accept": [], "return": ["--reason", "Not ours"],
        }[action]
        return self.node.ctl(action, number, *args)

    def appeal_in(self, state):
        number = self.node.file()["number"]
        path = {
            "registered": [], "assigned": ["assign"], "extended": ["extend-early"],
            "answered": ["answer"], "closed": ["answer", "close"], "withdrawn": ["withdraw"],
            "reopened": ["answer", "reopen"],
        }[state]
        for a in path:
            if a == "extend-early":
                self.node.ctl("extend", number, "--until", "2027-01-05", "--reason", "Inspection")
            else:
                self.act(number, a)
        self.assertEqual(self.node.ctl("show", number)["status"], state)
        return number

    def test_filing_gives_number_and_deadline_at_once(self):
        r = self.node.file()
        self.assertRegex(r["number"], r"^KZ-75-2026-\d{6}$")
        # Friday 27 Nov 2026 + 15 working days, skipping Independence Day.
        self.assertEqual(r["deadline"], "2026-12-21")
        self.assertEqual(r["status"], "registered")
        self.assertEqual(r["receiving_body"], "KZ-75")
        shown = self.node.ctl("show", r["number"])
        self.assertEqual(shown["deadline"], "2026-12-21")
        self.assertEqual(shown["history"][0]["kind"], "filed")
        self.assertEqual(shown["personal"]["name"], "Aigerim Bekova")

    def test_numbers_are_consecutive(self):
        a = int(self.node.file()["number"][-6:])
        b = int(self.node.file()["number"][-6:])
        self.assertEqual(b, a + 1)

    def test_every_transition_valid_and_invalid(self):
        for state in STATES:
            stuck = self.appeal_in(state)  # a refused action leaves it as it was
            version = self.node.ctl("show", stuck)["version"]
            for action, allowed in ALLOWED.items():
                with self.subTest(state=state, action=action):
                    number = self.appeal_in(state) if state in allowed else stuck
                    before = self.node.info()["head_seq"]
                    if state in allowed:
                        r = self.act(number, action)
                        self.assertEqual(self.node.info()["head_seq"], before + 1)
                        expected = {"assign": "extended" if state == "extended" else "assigned",
                                    "extend": "extended", "answer": "answered",
                                    "withdraw": "withdrawn", "close": "closed",
                                    "reopen": "reopened"}[action]
                        self.assertEqual(r["status"], expected)
                    else:
                        with self.assertRaises(NodeError) as cm:
                            self.act(number, action)
                        self.assertEqual(cm.exception.code, "invalid_transition")
                        self.assertIn(f"cannot {action} {number}: it is {state}",
                                      cm.exception.message)
                        self.assertEqual(self.node.info()["head_seq"], before)
                        shown = self.node.ctl("show", number)
                        self.assertEqual(shown["version"], version)
                        self.assertEqual(shown["status"], state)

    def test_forward_needs_a_federation(self):
        number = self.node.file()["number"]
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("forward", number, "--to", "KZ-71", "--reason", "Competence of Astana")
        self.assertEqual(cm.exception.code, "not_found")
        self.assertIn("KZ-71", cm.exception.message)

    def test_unknown_appeal(self):
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("close", "KZ-75-2026-999999")
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("show", "not-a-number")
        self.assertEqual(cm.exception.code, "bad_request")

    def test_extension_limits(self):
        number = self.node.file()["number"]  # registered 2026-11-27
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("extend", number, "--until", "2027-01-28", "--reason", "x")
        self.assertEqual(cm.exception.code, "refused")
        self.assertIn("at most 2 months in total (here until 2027-01-27)", cm.exception.message)
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("extend", number, "--until", "2026-12-10", "--reason", "x")
        self.assertEqual(cm.exception.code, "bad_request")
        self.assertIn("past 2026-12-21", cm.exception.message)
        with self.assertRaises(NodeError) as cm:
            self.node.ctl("extend", number, "--until", "2027-01-10", "--reason", "")
        self.assertEqual(cm.exception.code, "bad_request")
        r = self.node.ctl("extend", number, "--until", "2027-01-10", "--reason", "Inspection")
        self.assertEqual(r["deadline"], "2027-01-10")
        r = self.node.ctl("extend", number, "--until", "2027-01-27", "--reason", "Second part")
        self.assertEqual(r["deadline"], "2027-01-27")
        shown = self.node.ctl("show", number)
        self.assertEqual(shown["term"], "2026-12-21")
        self.assertEqual([h["kind"] for h in shown["history"]], ["filed", "extended", "extended"])

    def test_reopened_appeal_gets_a_new_term(self):
        number = self.node.file()["number"]
        self.node.ctl("answer", number, "--outcome", "rejected", "--text", "No grounds")
        self.node.set_clock("2026-12-01 09:00")
        try:
            r = self.node.ctl("reopen", number, "--reason", "Complaint about the answer")
            self.assertEqual(r["status"], "reopened")
            self.assertEqual(r["deadline"], "2026-12-23")  # 1 Dec + 15 working days
        finally:
            self.node.set_clock("2026-11-27 10:00")


class FilingRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node("KZ-75", clock="2026-11-27 10:00").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.node.stop()
        cls.node.cleanup()
        assert rc == 0, f"node exited with {rc}"

    def refused(self, code, *args):
        before = self.node.info()["head_seq"]
        with self.assertRaises(NodeError) as cm:
            self.node.ctl(*args)
        self.assertEqual(cm.exception.code, code)
        self.assertEqual(self.node.info()["head_seq"], before, "a refused request wrote")
        return cm.exception.message

    def test_anonymous_only_for_reports(self):
        msg = self.refused("refused", "file", "--type", "statement", "--category", "0002.0001",
                           "--subject", "No name", "--anonymous")
        self.assertIn("reports of crimes", msg)
        r = self.node.ctl("file", "--type", "report", "--category", "0004.0003",
                          "--subject", "Bribery at the land office", "--anonymous")
        self.assertTrue(r["urgent"])
        shown = self.node.ctl("show", r["number"])
        self.assertTrue(shown["anonymous"])
        self.assertEqual(shown["personal"]["name"], "")
        msg = self.refused("bad_request", "file", "--type", "report", "--category", "0004.0003",
                           "--subject", "x", "--anonymous", "--applicant-name", "Someone")
        self.assertIn("anonymous appeal carries no applicant data", msg)

    def test_name_required_and_iin_checked(self):
        msg = self.refused("bad_request", "file", "--type", "statement", "--category",
                           "0002.0001", "--subject", "x")
        self.assertIn("name is required", msg)
        msg = self.refused("bad_request", "file", "--type", "statement", "--category",
                           "0002.0001", "--subject", "x", "--applicant-name", "A B",
                           "--applicant-iin", "900101300127")
        self.assertIn("IIN", msg)
        self.assertNotIn("900101300127", msg)

    def test_collective_appeal(self):
        r = self.node.file("proposal", "0005.0003", "New park", "Initiative group", None,
                           "--co-signers", "250")
        self.assertEqual(self.node.ctl("show", r["number"])["co_signers"], 250)

    def test_unknown_category(self):
        msg = self.refused("bad_request", "file", "--type", "request", "--category", "9999",
                           "--subject", "x", "--applicant-name", "A B")
        self.assertIn("unknown category 9999", msg)

    def test_complaint_window(self):
        # Learned of the act on 1 Aug 2026: the window closed on 1 Nov 2026.
        msg = self.refused("refused", "file", "--type", "complaint", "--category", "0001.0002",
                           "--subject", "Refusal of a permit", "--applicant-name", "A B",
                           "--learned", "2026-08-01")
        self.assertIn("within 3 months", msg)
        self.assertIn("2026-11-01", msg)
        r = self.node.ctl("file", "--type", "complaint", "--category", "0001.0002",
                          "--subject", "Refusal of a permit", "--applicant-name", "A B",
                          "--learned", "2026-08-01", "--late-reason", "Hospitalised in Sep")
        self.assertEqual(r["type"], "complaint")
        r = self.node.ctl("file", "--type", "complaint", "--category", "0001.0002",
                          "--subject", "Refusal of a permit", "--applicant-name", "A B",
                          "--learned", "2026-10-01")
        self.assertEqual(r["status"], "registered")
        msg = self.refused("bad_request", "file", "--type", "complaint", "--category",
                           "0001.0002", "--subject", "x", "--applicant-name", "A B",
                           "--learned", "2026-12-01")
        self.assertIn("cannot be in the future", msg)
        # a date before the calendar is too old, not "in the future" (issue 10, L)
        msg = self.refused("bad_request", "file", "--type", "complaint", "--category",
                           "0001.0002", "--subject", "x", "--applicant-name", "A B",
                           "--learned", "1900-01-01", "--late-reason", "Abroad")
        self.assertIn("too far in the past", msg)
        self.refused("bad_request", "file", "--type", "statement", "--category", "0001.0002",
                     "--subject", "x", "--applicant-name", "A B", "--learned", "2026-10-01")

    def test_repeated_appeal_is_marked(self):
        first = self.node.file("statement", "0003.0001", "Land plot", "Serik Ospanov",
                               "851231400567")
        second = self.node.file("statement", "0003.0001", "Land plot again", "Serik Ospanov",
                                "851231400567")
        self.assertEqual(second["repeat_of"], first["number"])
        other = self.node.file("statement", "0002.0003", "School", "Serik Ospanov",
                               "851231400567")
        self.assertEqual(other["repeat_of"], "")
        explicit = self.node.file("statement", "0002.0003", "School", "Other Person", None,
                                  "--repeat-of", first["number"])
        self.assertEqual(explicit["repeat_of"], first["number"])
        self.refused("not_found", "file", "--type", "statement", "--category", "0002.0003",
                     "--subject", "x", "--applicant-name", "A B", "--repeat-of",
                     "KZ-75-2026-999999")

    def test_overdue_is_computed_from_the_clock(self):
        number = self.node.file()["number"]  # deadline 2026-12-21
        answered = self.node.file()["number"]
        self.node.ctl("answer", answered, "--outcome", "explained", "--text", "Explained")
        try:
            self.node.set_clock("2026-12-21 18:00")
            self.assertFalse(self.node.ctl("show", number)["overdue"])
            self.node.set_clock("2026-12-23 09:00")
            shown = self.node.ctl("show", number)
            self.assertTrue(shown["overdue"])
            self.assertEqual(shown["days_overdue"], 2)
            listed = self.node.ctl("list", "--overdue", "--limit", "1000")["items"]
            numbers = [i["number"] for i in listed]
            self.assertIn(number, numbers)
            self.assertNotIn(answered, numbers)
            self.assertTrue(all(i["overdue"] for i in listed))
        finally:
            self.node.set_clock("2026-11-27 10:00")
        self.assertFalse(self.node.ctl("show", number)["overdue"])

    def test_list_by_status_and_pages(self):
        numbers = [self.node.file("feedback", "0003.0004", f"Feedback {i}", "A B", None)["number"]
                   for i in range(5)]
        for n in numbers[:3]:
            self.node.ctl("assign", n, "--to", "Agriculture dept")
        assigned = self.node.ctl("list", "--status", "assigned", "--limit", "1000")["items"]
        self.assertTrue(set(numbers[:3]) <= {i["number"] for i in assigned})
        self.assertTrue(all(i["status"] == "assigned" for i in assigned))
        seen, after = [], ""
        while True:
            page = self.node.ctl("list", "--limit", "2", *(["--after", after] if after else []))
            seen += [i["number"] for i in page["items"]]
            after = page["next_after"]
            if not after:
                break
        self.assertEqual(len(seen), len(set(seen)))
        self.assertTrue(set(numbers) <= set(seen))
        self.assertEqual(len(seen), self.node.info()["appeals"])


if __name__ == "__main__":
    unittest.main()


def table_keys(node, table):
    """The keys of one LMDB table of a node (mdb_dump, printable form)."""
    out = subprocess.run(["mdb_dump", "-p", "-s", table, os.path.join(node.dir, "db")],
                         capture_output=True, text=True, check=True).stdout
    body = out.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0].splitlines()
    return body[0::2]


class StagedApplicants(unittest.TestCase):
    """The repeated-appeal check's index stages its new entries in `meta`
    ("apst" | counter) and merges them into `applicants` in key order once
    APPEAL_TEST_APPLICANTS_MERGE (3 here) applicants are staged
    (node/store/applicants.h): a repeat is found whether its predecessor is
    staged, merged, reloaded after kill -9, or rebuilt from the log."""

    def setUp(self):
        os.environ["APPEAL_TEST_APPLICANTS_MERGE"] = "3"
        self.node = Node("KZ-75", clock="2026-11-27 10:00").start()

    def tearDown(self):
        os.environ.pop("APPEAL_TEST_APPLICANTS_MERGE", None)
        rc = self.node.stop()
        self.node.cleanup()
        self.assertIn(rc, (0, None))

    def file(self, name, iin, category="0003.0001"):
        return self.node.file("statement", category, "Land plot", name, iin)

    def staged(self):
        return [k for k in table_keys(self.node, "meta") if k.startswith(" apst")]

    def test_repeats_through_the_stage_its_merge_a_kill_and_a_rebuild(self):
        serik = ("Serik Ospanov", "851231400567")
        a1 = self.file(*serik)
        self.assertEqual(a1["repeat_of"], "")
        a2 = self.file(*serik)
        self.assertEqual(a2["repeat_of"], a1["number"])  # its predecessor staged
        self.assertEqual(len(self.staged()), 2)
        self.assertEqual(table_keys(self.node, "applicants"), [])
        self.file("Aigerim Bekova", "900101300126")
        self.file("Timur Akhmetov", "880202300228")  # the third applicant: merged
        self.assertEqual(self.staged(), [])
        self.assertEqual(len(table_keys(self.node, "applicants")), 3)
        a3 = self.file(*serik)
        self.assertEqual(a3["repeat_of"], a2["number"])  # its predecessor merged
        self.assertEqual(len(self.staged()), 1)
        # staged and then killed: the rows are loaded again at the start
        dana = ("Dana Serikova", "950505400554", "0002.0001")
        b1 = self.file(*dana)
        self.node.kill()
        self.node.start()
        b2 = self.file(*dana)
        self.assertEqual(b2["repeat_of"], b1["number"])
        self.assertEqual(a3["repeat_of"], a2["number"])
        # rebuilt from the log: no staged rows, every applicant indexed
        self.assertEqual(self.node.stop(), 0)
        rc, out = self.node.offline("rebuild")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.staged(), [])
        self.assertEqual(len(table_keys(self.node, "applicants")), 4)
        self.node.start()
        self.assertEqual(self.file(*serik)["repeat_of"], a3["number"])
        self.assertEqual(self.file(*dana)["repeat_of"], b2["number"])
