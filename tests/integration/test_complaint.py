"""The applicant's complaint about an answer to the higher body (issue 13
item 4, docs/open311.md "Complaint to the higher body", decisions/0017):
filed over Open311 with the access code on the owner's node (KZ-75), which
registers a complaint linked by complaint_of and forwards it at once to its
higher body (KZ) with the personal data sealed to KZ; KZ's official accepts
it and reads the applicant; every node counts it. Refusals write nothing."""

import os
import shutil
import unittest

from harness import federation, free_port, kz_ms, wait_for
from test_applicant import get, post

CODES = ["KZ", "KZ-75", "KZ-71"]


def complaint_groups(member):
    groups = member.ctl("stats", "--by", "type,owner", "--type", "complaint")["groups"]
    return {g["owner"]: g["count"] for g in groups}


class Complaint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(CODES, heartbeat_ms=500)
        cls.clock = os.path.join(cls.fed.root, "clock")
        for m in cls.fed.members.values():
            m.clock_file = cls.clock
        cls.set_clock("2026-11-02 10:00")  # a Monday
        cls.ports = {}
        try:
            for code in CODES:
                cls.ports[code] = free_port()
                cls.fed.members[code].start("--open311", f"127.0.0.1:{cls.ports[code]}")
        except Exception:
            cls.fed.kill_all()
            raise
        cls.k75, cls.kz = cls.fed.members["KZ-75"], cls.fed.members["KZ"]

    @classmethod
    def set_clock(cls, when):
        tmp = cls.clock + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(kz_ms(when)))
        os.replace(tmp, cls.clock)  # the file every member reads

    @classmethod
    def tearDownClass(cls):
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)

    def file(self, node=None):
        return (node or self.k75).ctl(
            "file", "--type", "statement", "--category", "0002.0001", "--subject",
            "Pension recalculation", "--applicant-name", "Aigerim Bekova",
            "--applicant-iin", "900101300126", "--applicant-contacts", "aigerim@example.kz",
            "--body", "Not recalculated since March")

    def complain(self, number, code, node="KZ-75", **extra):
        return post(self.ports[node], f"/open311/v2/requests/{number}/complaint.json",
                    {"code": code, **extra})

    def head(self, node=None):
        return (node or self.k75).ctl("info")["head_seq"]

    def refused(self, number, code, status, words, node="KZ-75"):
        member = self.fed.members[node]
        head = self.head(member)
        st, doc = self.complain(number, code, node=node, description="Not fixed")
        self.assertEqual(st, status, doc)
        self.assertIn(words, doc[0]["description"])
        self.assertEqual(self.head(member), head, "nothing written")
        return doc[0]["description"]

    def test_complaint_lands_at_the_higher_body(self):
        r = self.file()
        number, code = r["number"], r["access_code"]
        # Not answered yet: refused, nothing written.
        self.refused(number, code, 409,
                     f"{number} is registered: a complaint to the higher body is about an answer")
        self.k75.ctl("answer", number, "--outcome", "rejected", "--text", "No grounds")
        self.refused(number, "b" * 24, 403, "wrong number or access code")
        self.refused("KZ-75-2026-999999", code, 403, "wrong number or access code")
        before = {c: complaint_groups(m) for c, m in self.fed.members.items()}
        head = self.head()
        st, doc = self.complain(number, code, description="The answer ignores my documents")
        self.assertEqual(st, 200, doc)
        new, new_code = doc[0]["service_request_id"], doc[0]["access_code"]
        self.assertNotEqual(new, number)
        self.assertRegex(new, r"^KZ-75-2026-\d{6}$")
        self.assertEqual((doc[0]["complaint_of"], doc[0]["status"]), (number, "forwarded"))
        self.assertRegex(new_code, r"^[a-z2-7]{24}$")
        self.assertEqual((doc[0]["seq"], self.head()), (head + 2, head + 2),
                         "a filing and a forward, in one transaction")
        shown = self.k75.ctl("show", new)
        self.assertEqual((shown["type"], shown["complaint_of"], shown["status"]),
                         ("complaint", number, "forwarded"))
        self.assertEqual([h["kind"] for h in shown["history"]], ["filed", "forwarded"])
        # KZ's official accepts it, as any forward, and reads the applicant.
        wait_for(lambda: self.kz.ctl("show", new)["status"] == "forwarded", timeout=30,
                 what="the complaint replicated to KZ")
        self.kz.ctl("accept", new)
        at_kz = self.kz.ctl("show", new)
        self.assertEqual((at_kz["owner"], at_kz["status"], at_kz["complaint_of"]),
                         ("KZ", "registered", number))
        self.assertEqual(at_kz["personal"]["name"], "Aigerim Bekova")
        self.assertEqual(at_kz["personal"]["iin"], "900101300126")
        self.assertEqual(at_kz["personal"]["body"], "The answer ignores my documents")
        self.assertIn(number, at_kz["personal"]["subject"])
        # Every node counts it, owned by KZ after the acceptance.
        for c, m in self.fed.members.items():
            want = dict(before[c])
            want["KZ"] = want.get("KZ", 0) + 1
            wait_for(lambda: complaint_groups(m) == want, timeout=30,
                     what=f"{c} counts the complaint at KZ")
        # The applicant's view of the complaint is on KZ now, with its code.
        st, view = get(self.ports["KZ"], f"/open311/v2/requests/{new}/mine.json?code={new_code}")
        self.assertEqual(st, 200, view)
        self.assertEqual(view[0]["name"], "Aigerim Bekova")

    def test_window_closed_and_no_higher_body(self):
        r = self.file()
        number, code = r["number"], r["access_code"]
        self.k75.ctl("answer", number, "--outcome", "explained", "--text", "See the law")
        # Answered on 2 November 2026: the window closes on 2 February 2027.
        self.set_clock("2027-02-03 10:00")
        try:
            msg = self.refused(number, code, 409, "the window closed on 2027-02-02")
            self.assertIn("within 3 months of the answer", msg)
            self.assertIn("restore the term", msg)
        finally:
            self.set_clock("2026-11-02 10:00")
        # KZ itself has no higher body.
        kz = self.file(self.kz)
        self.kz.ctl("answer", kz["number"], "--outcome", "explained", "--text", "See the law")
        self.refused(kz["number"], kz["access_code"], 409, "KZ has no higher body", node="KZ")


if __name__ == "__main__":
    unittest.main()
