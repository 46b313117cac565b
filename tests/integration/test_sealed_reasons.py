"""Officials' reasons are sealed (issue 10 F, docs/record-format.md 7.6):
the late, extension, forward, return, reopening and withdrawal reasons name
applicants in practice, so they replicate only as ciphertext. The owner (and
the other node of a forward or a return) reads them in `show`; every other
region sees that a reason exists, not its text, and its data.mdb never
holds the text."""

import datetime
import os
import shutil
import unittest

from harness import federation, wait_for

# One secret per reason, each naming an applicant and a phone number.
SECRETS = {
    "late": "Aigerim Late-Sarsenova phoned from +77011110001",
    "extended": "Aigerim Ext-Sarsenova phoned from +77011110002",
    "forwarded": "Aigerim Fwd-Sarsenova phoned from +77011110003",
    "returned": "Aigerim Ret-Sarsenova phoned from +77011110004",
    "reopened": "Aigerim Reo-Sarsenova phoned from +77011110005",
    "withdrawn": "Aigerim Wdr-Sarsenova phoned from +77011110006",
}
SEALED = "(reason sealed)"


def details(view):
    return {h["kind"]: h["detail"] for h in view["history"]}


def raw_store(m):
    with open(os.path.join(m.dir, "db", "data.mdb"), "rb") as f:
        return f.read()


class SealedReasons(unittest.TestCase):
    def setUp(self):
        self.fed = federation(["KZ", "KZ-71", "KZ-75"])
        self.fed.start()

    def tearDown(self):
        rcs = self.fed.stop()
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def walk_every_reason(self):
        almaty, astana = self.fed.members["KZ-75"], self.fed.members["KZ-71"]
        today = datetime.date.today()
        learned = (today - datetime.timedelta(days=200)).isoformat()
        number = almaty.ctl("file", "--type", "complaint", "--category", "0001.0002",
                            "--subject", "Refusal of a permit", "--applicant-name", "A B",
                            "--learned", learned, "--late-reason", SECRETS["late"])["number"]
        until = (today + datetime.timedelta(days=40)).isoformat()
        almaty.ctl("extend", number, "--until", until, "--reason", SECRETS["extended"])
        almaty.ctl("forward", number, "--to", "KZ-71", "--reason", SECRETS["forwarded"])
        # The receiver reads the forward's reason while it decides.
        seen = wait_for(lambda: (lambda v: v["status"] == "forwarded" and v)(
            astana.ctl("show", number)), 30, what="the forward to arrive")
        self.assertIn(SECRETS["forwarded"], details(seen)["forwarded"])
        self.assertEqual(details(seen)["extended"].split(": ", 1)[1], SEALED)
        astana.ctl("return", number, "--reason", SECRETS["returned"])
        wait_for(lambda: almaty.ctl("show", number)["status"] == "extended", 30,
                 what="the return to arrive")
        almaty.ctl("answer", number, "--outcome", "explained", "--text", "Explained")
        almaty.ctl("reopen", number, "--reason", SECRETS["reopened"])
        almaty.ctl("withdraw", number, "--reason", SECRETS["withdrawn"])
        return number

    def test_reasons_are_read_by_the_owner_only(self):
        number = self.walk_every_reason()
        almaty, astana, kz = (self.fed.members[c] for c in ("KZ-75", "KZ-71", "KZ"))
        for m in (astana, kz):
            wait_for(lambda m=m: m.ctl("show", number)["status"] == "withdrawn", 30,
                     what=f"the history to reach {m.juris}")
        # The owner reads every reason: its own, and the return boxed to it.
        own = details(almaty.ctl("show", number))
        self.assertIn("late: " + SECRETS["late"], own["filed"])
        for kind in ("extended", "forwarded", "returned", "reopened", "withdrawn"):
            self.assertIn(SECRETS[kind], own[kind], kind)
        # The national node sees that each reason exists, never its text.
        national = kz.ctl("show", number)
        text = repr(national)
        for secret in SECRETS.values():
            self.assertNotIn(secret, text)
        shown = details(national)
        self.assertIn("late: " + SEALED, shown["filed"])
        for kind in ("extended", "forwarded", "returned", "reopened", "withdrawn"):
            self.assertIn(SEALED, shown[kind], kind)
        # The receiver of the forward reads that reason and its own return.
        theirs = details(astana.ctl("show", number))
        self.assertIn(SECRETS["forwarded"], theirs["forwarded"])
        self.assertIn(SECRETS["returned"], theirs["returned"])
        for kind in ("extended", "reopened", "withdrawn"):
            self.assertNotIn(SECRETS[kind], theirs[kind], kind)
        # No copy of the text in clear: not in the replicated envelopes the
        # nodes store, nor anywhere in the files, the owner's included.
        for m in (kz, astana, almaty):
            raw = raw_store(m)
            for secret in SECRETS.values():
                self.assertNotIn(secret.encode(), raw, m.juris)
                self.assertNotIn(b"+77011110", raw, m.juris)
            rc, out = m.offline("verify")
            self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
