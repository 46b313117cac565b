"""Kazakh, Russian and English (issue 14, docs/i18n.md):

- the catalogues: every message of the code has a kk and a ru translation,
  no entry is fuzzy, obsolete or unused (msgfmt --check --statistics, and
  the .pot extracted from the code now compared with the .po files);
- appealctl with LANG=kk_KZ.UTF-8, ru_RU.UTF-8, en_US.UTF-8 and --lang
  prints each language; exit codes and --json are the same in all three;
- the dashboard in headless Chromium in each language (?lang= and
  Accept-Language): every visible text node is in the catalogue's language
  (no English left on the kk and ru pages but the names listed in
  ENGLISH_ALLOWED), numbers and dates formatted for the language, a
  screenshot per language in the artifacts directory."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN, CTL, federation, kz_ms, wait_for
import test_dashboard as dash

SRC = os.environ.get("APPEAL_SOURCE") or os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                                     "..", ".."))
PO = os.path.join(SRC, "po")
# Texts that stay as they are on every page: codes, paths, product and language names.
ENGLISH_ALLOWED = {"KZ", "HTTP", "JavaScript", "English", "api", "status", "metrics", "healthz",
                   "appeal", "node", "docs", "operations", "md", "seq"}


def po_entries(path):
    """{(msgctxt, msgid): (translations, flags, obsolete)} of a .po/.pot file."""
    entries, cur, last = {}, None, None
    text = open(path, encoding="utf-8").read()
    for block in text.split("\n\n"):
        fields, flags, obsolete = {}, "", False
        for line in block.splitlines():
            if line.startswith("#~"):
                obsolete = True
                continue
            if line.startswith("#,"):
                flags += line
                continue
            if line.startswith("#"):
                continue
            m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d\])?) "(.*)"$', line)
            if m:
                last = m.group(1)
                fields[last] = m.group(2)
            elif line.startswith('"'):
                fields[last] += line[1:-1]
        if obsolete:
            entries[("#~", block)] = ([], flags, True)
        elif "msgid" in fields and fields["msgid"] != "":
            strs = [v for k, v in sorted(fields.items()) if k.startswith("msgstr")]
            entries[(fields.get("msgctxt"), fields["msgid"])] = (strs, flags, False)
    return entries


class Catalogues(unittest.TestCase):
    def test_complete_checked_and_used(self):
        with tempfile.TemporaryDirectory() as tmp:
            pot = os.path.join(tmp, "now.pot")
            subprocess.run([os.path.join(PO, "update"), "--pot", pot], check=True)
            code = set(po_entries(pot))
        self.assertGreater(len(code), 200)
        for lang in ("kk", "ru"):
            path = os.path.join(PO, f"{lang}.po")
            with self.subTest(lang=lang):
                p = subprocess.run(["msgfmt", "--check", "--statistics", "-o", os.devnull, path],
                                   capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stderr.strip(), r"^\d+ translated messages\.$", p.stderr)
                entries = po_entries(path)
                self.assertEqual([k for k, v in entries.items() if v[2]], [], "obsolete entries")
                self.assertEqual([k for k, v in entries.items() if "fuzzy" in v[1]], [], "fuzzy")
                self.assertEqual(sorted(code - set(entries), key=str), [],
                                 "messages of the code with no translation")
                self.assertEqual(sorted(set(entries) - code, key=str), [], "unused entries")
                self.assertEqual([k for k, v in entries.items() if not all(v[0])], [],
                                 "empty translations")
                plural = 3 if lang == "ru" else 2
                for k, v in entries.items():
                    if len(v[0]) > 1:
                        self.assertEqual(len(v[0]), plural, k)


class Appealctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(["KZ-75"])
        cls.node = cls.fed.members["KZ-75"]
        cls.node.start()
        cls.number = cls.node.ctl("file", "--type", "statement", "--category", "0002.0001",
                                  "--subject", "S", "--applicant-name", "N")["number"]

    @classmethod
    def tearDownClass(cls):
        cls.fed.stop()
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)

    def run_ctl(self, env_lang, *args):
        env = {k: v for k, v in os.environ.items()
               if k not in ("APPEAL_KEY", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
        if env_lang:
            env["LANG"] = env_lang
        p = subprocess.run([CTL, "--node", self.node.api, "--key", self.node.admin_key, *args],
                           capture_output=True, text=True, env=env)
        return p.returncode, p.stdout, p.stderr

    LANGS = {"kk_KZ.UTF-8": ("мәртебесі", "тіркелді", "арыз", "мерзімі"),
             "ru_RU.UTF-8": ("статус", "зарегистрировано", "заявление", "срок"),
             "en_US.UTF-8": ("status", "registered", "statement", "deadline")}

    def test_each_language(self):
        for env_lang, words in self.LANGS.items():
            with self.subTest(lang=env_lang):
                rc, out, err = self.run_ctl(env_lang, "show", self.number)
                self.assertEqual(rc, 0, err)
                for w in words:
                    self.assertIn(w, out)
                rc, out2, _ = self.run_ctl("C.UTF-8", "--lang", env_lang[:2], "show", self.number)
                self.assertEqual(out2, out, "--lang gives what LANG gives")

    def test_json_and_exit_codes_identical(self):
        cases = [("show", self.number), ("show", "KZ-75-2026-999999"), ("list",), ("info",),
                 ("answer", self.number, "--outcome", "bogus", "--text", "x"),
                 ("frobnicate",), ("file", "--type", "statement", "--category", "0002.0001",
                                    "--subject", "S", "--applicant-name", "N",
                                    "--appeal-lang", "de")]
        for args in cases:
            with self.subTest(args=args):
                seen = {}
                for env_lang in self.LANGS:
                    rc, out, err = self.run_ctl(env_lang, "--json", *args)
                    out = re.sub(r'"now_ms":\d+', "", out)
                    seen[env_lang] = (rc, out)
                self.assertEqual(len(set(seen.values())), 1, seen)

    def test_node_errors_in_the_callers_language(self):
        msgs = {}
        for env_lang in self.LANGS:
            rc, out, err = self.run_ctl(env_lang, "show", "KZ-75-2026-999999")
            self.assertEqual(rc, 1)
            msgs[env_lang] = err
        self.assertIn("не найдено", msgs["ru_RU.UTF-8"])
        self.assertIn("табылмады", msgs["kk_KZ.UTF-8"])
        for env_lang in ("ru_RU.UTF-8", "kk_KZ.UTF-8"):  # the node's own words, as a detail
            self.assertIn(msgs["en_US.UTF-8"].split("appealctl: ", 1)[1].strip(), msgs[env_lang])

    def test_language_of_the_appeal(self):
        n = self.node.ctl("file", "--type", "complaint", "--category", "0002.0001", "--subject",
                          "S", "--applicant-name", "N", "--appeal-lang", "ru")["number"]
        self.assertEqual(self.node.ctl("show", n)["lang"], "ru")
        self.assertEqual(self.node.ctl("show", self.number)["lang"], "kk")  # default_lang
        rc, out, err = self.run_ctl("en_US.UTF-8", "--json", "file", "--type", "statement",
                                    "--category", "0002.0001", "--subject", "S",
                                    "--applicant-name", "N", "--appeal-lang", "de")
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["error"]["code"], "bad_request")
        self.assertIn("kk, ru or en", json.loads(out)["error"]["message"])


LOCALE = {"en": "en-US", "kk": "kk-KZ", "ru": "ru-RU"}
MONTH = {"en": "November", "kk": "қараша", "ru": "ноября"}


def visible_texts(html):
    """The text nodes a person sees: outside hidden elements, script, style, noscript, title."""
    import html.parser as hp

    class P(hp.HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.texts = [], []

        def handle_starttag(self, tag, attrs):
            if tag in dash.Dom.VOID:
                return
            a = dict(attrs)
            hide = "hidden" in a or tag in ("script", "style", "noscript", "title", "head")
            self.stack.append((tag, bool(hide or (self.stack and self.stack[-1][1]))))

        def handle_endtag(self, tag):
            while self.stack:
                if self.stack.pop()[0] == tag:
                    break

        def handle_data(self, data):
            if self.stack and not self.stack[-1][1] and data.strip():
                self.texts.append(" ".join(data.split()))

    p = P()
    p.feed(html)
    return p.texts


@unittest.skipUnless(os.path.exists(dash.CHROMIUM), "chromium is not installed (tools/deps)")
class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(["KZ", "KZ-75"], heartbeat_ms=600000)
        cls.clock = os.path.join(cls.fed.root, "clock")
        for m in cls.fed.members.values():
            m.clock_file = cls.clock
        cls.set_clock("2026-11-02 10:00")
        cls.http = f"127.0.0.1:{dash.free_port()}"
        cls.fed.members["KZ"].start("--http", cls.http)
        cls.fed.members["KZ-75"].start()
        kz75 = cls.fed.members["KZ-75"]
        for i in range(3):
            kz75.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                     f"A {i}", "--applicant-name", "A B")
        cls.set_clock("2026-11-26 12:00")
        cls.fed.wait_converged()
        cls.base = f"http://{cls.http}"
        wait_for(lambda: any(r["code"] == "KZ-75" and r["count"] == 3
                             for r in dash.get_json(cls.base + "/api/status")["regions"]),
                 30, what="KZ's copy of KZ-75")
        cls.strings = {lang: json.loads(dash.get(f"{cls.base}/i18n.json?lang={lang}")[2])
                       for lang in ("en", "kk", "ru")}

    @classmethod
    def tearDownClass(cls):
        cls.fed.stop()
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)

    @classmethod
    def set_clock(cls, when):
        with open(cls.clock + ".tmp", "w") as f:
            f.write(str(kz_ms(when)))
        os.replace(cls.clock + ".tmp", cls.clock)

    def test_accept_language_picks_the_strings(self):
        import urllib.request
        for header, lang in (("ru-RU,ru;q=0.9,en;q=0.5", "ru"), ("de, kk;q=0.8, ru;q=0.7", "kk"),
                             ("de-DE", "en"), ("en;q=0.1, ru;q=0.2", "ru")):
            req = urllib.request.Request(self.base + "/i18n.json",
                                         headers={"Accept-Language": header})
            with urllib.request.urlopen(req, timeout=10) as r:
                self.assertEqual(json.loads(r.read())["lang"], lang, header)

    def test_each_language(self):
        os.makedirs(dash.ARTIFACTS, exist_ok=True)
        english = set()
        for m in self.strings["kk"]["messages"]:
            english.add(m.split("\u0004")[-1])
        for lang in ("kk", "ru", "en"):
            with self.subTest(lang=lang):
                url = f"{self.base}/?lang={lang}"
                dom_text = dash.chromium(url, "--dump-dom")
                dom = dash.Dom(dom_text)
                self.assertEqual(dom.attr("refresh-status", "data-state"), "ok")
                html_tag = next(a for tag, a in dom.attrs if tag == "html")
                self.assertEqual(html_tag.get("lang"), lang)
                texts = visible_texts(dom_text)
                if lang != "en":
                    left = [t for t in texts if t in english and t not in
                            self.strings[lang]["messages"].values()]
                    self.assertEqual(left, [], "untranslated catalogue texts")
                    words = {w for t in texts for w in re.findall(r"[A-Za-z]{2,}", t)}
                    self.assertEqual(words - ENGLISH_ALLOWED, set(), "English words left")
                # Region names in the language, from the region file.
                self.assertIn(self.strings[lang]["regions"]["KZ-75"], dom.attr("region-KZ-75", "title"))
                self.assertIn(self.strings[lang]["regions"]["KZ-35"], dom.attr("region-KZ-35", "title"))
                # Dates and numbers as the language writes them.
                self.assertIn(MONTH[lang], dom.text("node-today"))
                self.assertEqual(dom.attr("node-today", "data-value"), "2026-11-26")
                share = dom.text("region-KZ-75-overdue-share")
                self.assertRegex(share, {"en": r"^\d+%$", "ru": r"^\d+[\u00a0\u202f ]%$",
                                         "kk": r"^\d+%$"}[lang])
                raw = dom.attr("region-KZ-75-source", "data-value")
                self.assertIn(raw, ("live", "replica"))
                self.assertEqual(dom.text("region-KZ-75-source"),
                                 self.strings[lang]["messages"].get(f"source\u0004{raw}", raw))
                shot = os.path.join(dash.ARTIFACTS, f"dashboard-{lang}.png")
                dash.chromium(url, f"--screenshot={shot}", "--window-size=1366,900",
                              "--hide-scrollbars")
                self.assertGreater(os.path.getsize(shot), 20000)


if __name__ == "__main__":
    unittest.main()
