"""The applicant's own view (issue 13, docs/open311.md): the access code
returned once on filing (CLI and Open311), requests/NUMBER/mine on the
owner's node and on a replica, wrong codes and unknown numbers refused
alike, brute force limited per number and per client address, nothing
written by any of it."""

import http.client
import json
import os
import shutil
import unittest
import urllib.parse

from harness import federation, free_port, wait_for

CODES = ["KZ", "KZ-75"]


def get(port, path, source="127.0.0.1", headers=None):
    """(status, parsed JSON or raw bytes) of GET, sent from `source`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, body


def post(port, path, form, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        c.request("POST", path, urllib.parse.urlencode(form),
                  {"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


class Applicant(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(CODES, heartbeat_ms=500)
        cls.ports = {}
        try:
            for code in CODES:
                cls.ports[code] = free_port()
                cls.fed.members[code].start("--open311", f"127.0.0.1:{cls.ports[code]}")
            cls.k75 = cls.fed.members["KZ-75"]
            cls.kz = cls.fed.members["KZ"]
            cls.key = cls.k75.ctl("channel", "add", "--label", "portal")["api_key"]
        except Exception:
            cls.fed.kill_all()
            raise
        cls.source = 1  # each test its own client address (the limit is per address)

    @classmethod
    def tearDownClass(cls):
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)

    def setUp(self):
        Applicant.source += 1
        self.src = f"127.0.0.{Applicant.source}"

    def mine(self, number, code, node="KZ-75", src=None, locale=None, headers=None):
        q = urllib.parse.urlencode({"code": code, **({"locale": locale} if locale else {})})
        return get(self.ports[node], f"/open311/v2/requests/{number}/mine.json?{q}",
                   src or self.src, headers)

    def file_cli(self):
        return self.k75.ctl("file", "--type", "statement", "--category", "0002.0001",
                            "--subject", "Pension recalculation", "--applicant-name",
                            "Aigerim Bekova", "--applicant-iin", "900101300126",
                            "--applicant-contacts", "aigerim@example.kz", "--body",
                            "Not recalculated since March")

    def test_code_once_on_filing_and_the_whole_appeal_with_it(self):
        st, doc = post(self.ports["KZ-75"], "/open311/v2/requests.json",
                       {"api_key": self.key, "service_code": "0002.0001",
                        "attribute[type]": "statement", "first_name": "Aigerim",
                        "last_name": "Nurlanbekova", "email": "aigerim.n@example.kz",
                        "description": "My pension was not recalculated"})
        self.assertEqual(st, 200, doc)
        number, code = doc[0]["service_request_id"], doc[0]["access_code"]
        self.assertRegex(code, r"^[a-z2-7]{24}$")
        # The public status never shows it again, nor the personal data.
        st, pub = get(self.ports["KZ-75"], f"/open311/v2/requests/{number}.json")
        self.assertEqual(st, 200)
        self.assertNotIn(code, json.dumps(pub))
        st, view = self.mine(number, code)
        self.assertEqual(st, 200, view)
        v = view[0]
        self.assertEqual((v["service_request_id"], v["status"]), (number, "registered"))
        self.assertEqual(v["description"], "My pension was not recalculated")
        self.assertIn("Nurlanbekova", v["name"])
        self.assertEqual(v["answer_text"], "")
        # Grouped and in capitals, as a receipt prints it, is the same code.
        grouped = "-".join(code[i:i + 4] for i in range(0, 24, 4)).upper()
        self.assertEqual(self.mine(number, grouped)[0], 200)
        # The code is not in the record: only its salted hash.
        self.assertNotIn(code.encode(), open(self.k75.log_path, "rb").read())

    def test_answer_text_shown_and_replica_says_where_to_ask(self):
        r = self.file_cli()
        number, code = r["number"], r["access_code"]
        self.k75.ctl("answer", number, "--outcome", "satisfied", "--text",
                     "Recalculated from 1 March")
        st, view = self.mine(number, code)
        self.assertEqual(st, 200, view)
        self.assertEqual((view[0]["status"], view[0]["outcome"]), ("answered", "satisfied"))
        self.assertEqual(view[0]["answer_text"], "Recalculated from 1 March")
        self.assertEqual([h["kind"] for h in view[0]["history"]], ["filed", "answered"])
        wait_for(lambda: self.kz.ctl("show", number)["status"] == "answered", timeout=30,
                 what="the answer replicated to KZ")
        st, doc = self.mine(number, code, node="KZ")
        self.assertEqual(st, 421, doc)
        self.assertIn("KZ-75 handles this appeal now: ask its node", doc[0]["description"])
        self.assertNotIn("Recalculated", json.dumps(doc))
        st, wrong = self.mine(number, "a" * 24, node="KZ")
        self.assertEqual((st, wrong[0]["description"]), (403, "wrong number or access code"))

    def test_view_in_the_language_of_the_appeal(self):
        """Names and notes in the appeal's language (here kk, filed through
        Open311 with `lang`), unless `locale` or Accept-Language asks for
        another; the machine values the same in every language."""
        st, doc = post(self.ports["KZ-75"], "/open311/v2/requests.json",
                       {"api_key": self.key, "service_code": "0002.0001", "lang": "kk",
                        "attribute[type]": "statement", "first_name": "Aigerim",
                        "email": "aigerim.n@example.kz", "locale": "en"})
        self.assertEqual(st, 200, doc)
        number, code = doc[0]["service_request_id"], doc[0]["access_code"]
        self.k75.ctl("answer", number, "--outcome", "satisfied", "--text", "Қайта есептелді")
        want = {"kk": ("жауап берілді", "жауап берілді: қанағаттандырылды", "арыз",
                       "Әлеуметтік қамсыздандыру және зейнетақы", "қанағаттандырылды"),
                "ru": ("дан ответ", "дан ответ: удовлетворено", "заявление",
                       "Социальное обеспечение и пенсии", "удовлетворено"),
                "en": ("answered", "answered: satisfied", "statement",
                       "Social security and pensions", "satisfied")}
        asks = [("kk", None, None), ("ru", "ru", None), ("en", None, {"Accept-Language": "en"}),
                ("ru", "ru_RU.UTF-8", {"Accept-Language": "en"}),
                ("kk", "de", {"Accept-Language": "fr"})]  # none of the three: the appeal's
        for lang, locale, headers in asks:
            with self.subTest(lang=lang, locale=locale, headers=headers):
                st, view = self.mine(number, code, locale=locale, headers=headers)
                self.assertEqual(st, 200, view)
                v = view[0]
                self.assertEqual((v["lang"], v["locale"]), ("kk", lang))
                self.assertEqual((v["status_name"], v["status_notes"], v["appeal_type_name"],
                                  v["service_name"], v["outcome_name"]), want[lang])
                self.assertEqual((v["status"], v["appeal_type"], v["outcome"]),
                                 ("answered", "statement", "satisfied"))

    def test_wrong_code_and_unknown_number_look_alike_and_write_nothing(self):
        r = self.file_cli()
        head = self.k75.ctl("info")["head_seq"]
        answers = [self.mine(r["number"], "b" * 24),          # wrong code
                   self.mine("KZ-75-2026-999999", r["access_code"]),  # no such number
                   self.mine(r["number"], "not a code at all"),  # malformed code
                   self.mine("../etc/passwd", r["access_code"])]  # not a number
        for st, doc in answers:
            self.assertEqual((st, doc), (403, [{"code": 403,
                                                "description": "wrong number or access code"}]))
        st, doc = self.mine(r["number"], "")
        self.assertEqual(st, 400)
        self.assertEqual(self.k75.ctl("info")["head_seq"], head, "nothing written")

    def test_brute_force_limited_per_number(self):
        r = self.file_cli()
        for i in range(5):
            st, _ = self.mine(r["number"], f"{i}" * 24, src=f"127.1.0.{i + 1}")
            self.assertEqual(st, 403)
        # Past the limit the number is closed for the window, the right code too,
        # from any address.
        st, doc = self.mine(r["number"], r["access_code"], src="127.1.1.1")
        self.assertEqual(st, 429, doc)
        self.assertIn("too many wrong access codes", doc[0]["description"])
        self.assertIn(f"applicant_rate_limited number={r['number']}", self.k75.log())

    def test_brute_force_limited_per_address(self):
        mine = self.file_cli()
        for i in range(5):
            other = self.file_cli()["number"]
            self.assertEqual(self.mine(other, "c" * 24)[0], 403)
        # This address is closed for the window, on any number.
        self.assertEqual(self.mine(mine["number"], mine["access_code"])[0], 429)
        self.assertEqual(self.mine(mine["number"], mine["access_code"], src="127.2.0.1")[0],
                         200)

    def rate(self, number, code, rating="satisfied", node="KZ-75", **extra):
        return post(self.ports[node], f"/open311/v2/requests/{number}/rating.json",
                    {"code": code, "rating": rating, **extra}, self.src)

    def rated_statements(self, node="KZ-75"):
        groups = self.fed.members[node].ctl("stats", "--by", "type")["groups"]
        g = [g for g in groups if g["type"] == "statement"][0]
        return g["rated"], g["share_satisfied"]

    def test_rating_with_the_code_once_and_only_of_an_answer(self):
        r, other = self.file_cli(), self.file_cli()
        number, code = r["number"], r["access_code"]
        head = self.k75.ctl("info")["head_seq"]
        before = self.rated_statements()
        wait_for(lambda: self.kz.ctl("show", other["number"]) is not None, timeout=30,
                 what="the filings replicated to KZ")
        before_kz = self.rated_statements("KZ")
        refusals = [
            (self.rate(number, code), 409, f"{number} is registered: only an answer can be rated"),
            (self.rate(number, "d" * 24), 403, "wrong number or access code"),
            (self.rate(other["number"], code), 403, "wrong number or access code"),
            (self.rate(number, code, rating="meh"), 400, "rating is satisfied or not_satisfied"),
        ]
        for (st, doc), want_st, want in refusals:
            self.assertEqual((st, doc[0]["description"]), (want_st, want))
        self.assertEqual(self.k75.ctl("info")["head_seq"], head, "nothing written")
        self.k75.ctl("answer", number, "--outcome", "satisfied", "--text", "Done")
        head = self.k75.ctl("info")["head_seq"]
        st, doc = self.rate(number, code, comment="Quick and clear, thank you")
        self.assertEqual(st, 200, doc)
        self.assertEqual((doc[0]["rating"], doc[0]["seq"]), ("satisfied", head + 1))
        # A replay, or a second opinion, is refused: one rating per appeal.
        for rating in ("satisfied", "not_satisfied"):
            st, doc = self.rate(number, code, rating=rating)
            self.assertEqual((st, doc[0]["description"]),
                             (409, f"{number} is already rated: one rating per appeal"))
        self.assertEqual(self.k75.ctl("info")["head_seq"], head + 1)
        # The comment is sealed: not in the log in clear.
        with open(os.path.join(self.k75.dir, "db", "data.mdb"), "rb") as f:
            self.assertNotIn(b"Quick and clear", f.read())
        st, view = self.mine(number, code)
        self.assertEqual(view[0]["rating"], "satisfied")
        self.assertEqual(view[0]["history"][-1]["kind"], "rated")
        self.assertEqual(self.rated_statements(), (before[0] + 1, 1.0))
        # Every node counts it; on a replica the code is right but the node
        # is not the one to write.
        wait_for(lambda: self.rated_statements("KZ")[0] == before_kz[0] + 1, timeout=30,
                 what="the rating replicated to KZ")
        st, doc = self.rate(number, code, node="KZ")
        self.assertEqual((st, doc[0]["description"]),
                         (421, "KZ-75 handles this appeal now: rate it on its node"))


if __name__ == "__main__":
    unittest.main()
