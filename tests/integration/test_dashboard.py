"""The dashboard (node/service/web/) in a real headless Chromium against a real
federation: every number it shows equals /api/status and `appealctl stats`
of the same node; it loads nothing from outside the node; it says so when
its data goes stale (the node stops mid-session) or never arrives.

Needs Chromium (Debian's `chromium`; tools/deps installs it). The screenshot
goes to $APPEAL_ARTIFACTS, else <build>/test-artifacts/."""

import html.parser
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

from harness import BIN, federation, free_port, kz_ms, wait_for

CODES = ["KZ", "KZ-71", "KZ-75", "KZ-79"]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("APPEAL_ARTIFACTS") or os.path.join(os.path.dirname(BIN),
                                                                "test-artifacts")


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def get_json(url):
    return json.loads(get(url)[2])


def chromium(url, *mode, budget_ms=10000):
    """Runs headless Chromium on url with `mode` (--dump-dom, --screenshot=...)
    after budget_ms of virtual time; returns stdout. Every process it starts
    is killed before this returns."""
    profile = tempfile.mkdtemp(prefix="appeal-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", *mode, url]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f"chromium did not finish within 60 s: {url}")
    finally:
        try:  # its helper processes (zygote, renderer) share its process group
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0:
        raise AssertionError(f"chromium exited {p.returncode}: {err[-2000:]}")
    return out


class Dom(html.parser.HTMLParser):
    """The elements of a DOM dump that have a data-testid: their attributes
    and text; and every element's attributes, for link checks."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, text):
        super().__init__()
        self.ids = {}
        self.attrs = []
        self.open = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if tag in self.VOID:
            return
        tid = a.get("data-testid")
        if tid is not None:
            self.ids[tid] = {"attrs": a, "text": ""}
        self.open.append((tag, tid))

    def handle_endtag(self, tag):
        while self.open:
            t, _ = self.open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, tid in self.open:
            if tid is not None:
                self.ids[tid]["text"] += data

    def text(self, tid):
        if tid not in self.ids:
            raise AssertionError(f"no element with data-testid={tid}")
        return " ".join(self.ids[tid]["text"].split())

    def attr(self, tid, name):
        self.text(tid)
        return self.ids[tid]["attrs"].get(name)

    def number(self, tid):
        t = self.text(tid).replace(",", "")
        if not re.fullmatch(r"-?\d+", t):
            raise AssertionError(f"{tid} shows {t!r}, not a whole number")
        return int(t)

    def shown(self, tid):
        return "hidden" not in self.ids[tid]["attrs"] if tid in self.ids else False


class Proxy:
    """An HTTP relay to a node's dashboard. It remembers the static files it
    relayed (so that a page can still load once the node is gone) and calls
    on_status(n) before relaying the n-th /api/status (from 1); a true answer
    drops that request. When the node does not answer (or the request is
    dropped), the relay closes the connection without a word, as a dead node
    would."""

    def __init__(self, target, on_status=None):
        self.target = target
        self.on_status = on_status or (lambda n: None)
        self.cache = {}
        self.paths = []
        self.status_calls = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                drop = False
                with proxy.lock:
                    proxy.paths.append(self.path)
                    if self.path.startswith("/api/status"):
                        proxy.status_calls += 1
                        drop = proxy.on_status(proxy.status_calls)
                if drop:
                    self.close_connection = True
                    return
                try:
                    status, ctype, body = get(proxy.target + self.path, timeout=5)
                    if not self.path.startswith("/api/"):
                        proxy.cache[self.path] = (status, ctype, body)
                except urllib.error.HTTPError as e:
                    status, ctype, body = e.code, e.headers.get("Content-Type", ""), e.read()
                except OSError:
                    if self.path not in proxy.cache:
                        self.close_connection = True
                        return
                    status, ctype, body = proxy.cache[self.path]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@unittest.skipUnless(os.path.exists(CHROMIUM), "chromium is not installed (tools/deps)")
class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Rare heartbeats: the logs stand still while pages are compared with the API.
        fed = cls.fed = federation(CODES, heartbeat_ms=600000)
        try:
            cls.clock = os.path.join(fed.root, "clock")
            for m in fed.members.values():
                m.clock_file = cls.clock
            cls.set_clock("2026-11-02 10:00")  # a Monday
            cls.http = {}
            for code, m in fed.members.items():
                cls.http[code] = f"127.0.0.1:{free_port()}"
                m.start("--http", cls.http[code], wait=False)
            for m in fed.members.values():
                m.wait_ready()
            kz75, kz71 = fed.members["KZ-75"], fed.members["KZ-71"]
            filed = [kz75.ctl("file", "--type", "statement", "--category", "0002.0001",
                              "--subject", f"Appeal {i}", "--applicant-name", "A B")["number"]
                     for i in range(4)]
            for i in range(2):
                kz71.ctl("file", "--type", "complaint", "--category", "0003.0001",
                         "--subject", f"Complaint {i}", "--applicant-name", "C D")
            cls.set_clock("2026-11-05 11:00")
            kz75.ctl("answer", filed[0], "--outcome", "satisfied", "--text", "Done")
            cls.set_clock("2026-11-26 12:00")  # past the deadlines of the open ones
            for m in (kz71, fed.members["KZ-79"]):
                m.ctl("file", "--type", "request", "--category", "0002.0001",
                      "--subject", "Recent", "--applicant-name", "E F")
            fed.wait_converged()
            cls.base = f"http://{cls.http['KZ']}"
            want = {"KZ-75": (4, 3), "KZ-71": (3, 2), "KZ-79": (1, 0)}  # count, overdue
            wait_for(lambda: {r["code"]: (r["count"], r["overdue"])
                              for r in get_json(cls.base + "/api/status")["regions"]
                              if r["code"] in want} == want, 30, what="the KZ node's view")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        rcs = cls.fed.stop()
        errs = {c: getattr(m, "stderr", "")[-2000:] for c, m in cls.fed.members.items()}
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)
        # A clean stop: 0 (a sanitizer report makes it non-zero).
        bad = {c: rc for c, rc in rcs.items() if rc not in (0, None)}
        assert not bad, f"nodes did not stop cleanly: {bad} {[errs[c] for c in bad]}"

    @classmethod
    def set_clock(cls, when):
        tmp = cls.clock + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(kz_ms(when)))
        os.replace(tmp, cls.clock)

    def stats(self):
        return self.fed.members["KZ"].ctl("stats", "--by", "region")

    def assert_regions_shown(self, dom, status, stats):
        groups = {g["region"]: g for g in stats["groups"]}
        zero = {"count": 0, "open": 0, "overdue": 0, "share_overdue": 0}
        self.assertEqual({r["code"] for r in status["regions"]}, set(CODES))
        for r in status["regions"]:
            code = r["code"]
            with self.subTest(region=code):
                g = groups.get(code, zero)
                for field, tid in (("count", "count"), ("open", "open"), ("overdue", "overdue")):
                    self.assertEqual(dom.number(f"region-{code}-{tid}"), r[field], field)
                    self.assertEqual(dom.number(f"region-{code}-{tid}"), g[field], field)
                    self.assertEqual(dom.number(f"table-{code}-{tid}"), r[field], field)
                share = float(dom.attr(f"region-{code}-overdue-share", "data-value"))
                self.assertAlmostEqual(share, r["share_overdue"], places=6)
                self.assertAlmostEqual(share, g["share_overdue"], places=6)
                if r["count"]:
                    shown = dom.text(f"region-{code}-overdue-share")
                    self.assertRegex(shown, r"^\d+(\.\d)?%$")
                    self.assertAlmostEqual(float(shown[:-1]), 100 * r["share_overdue"], delta=0.5)
                self.assertEqual(dom.text(f"region-{code}-source"), r["source"])
                self.assertEqual(stats["sources"][code]["source"], r["source"])
                self.assertEqual(dom.number(f"region-{code}-lag"), r["lag_records"])
                self.assertTrue(dom.text(f"region-{code}-staleness"))
        self.assertEqual(dom.number("total-count"), sum(r["count"] for r in status["regions"]))
        self.assertEqual(dom.number("total-overdue"),
                         sum(r["overdue"] for r in status["regions"]))

    def test_numbers_equal_the_api(self):
        before = get_json(self.base + "/api/status")
        dom = Dom(chromium(self.base + "/", "--dump-dom"))
        after = get_json(self.base + "/api/status")
        self.assertEqual(dom.attr("refresh-status", "data-state"), "ok", dom.text("refresh-status"))
        self.assertEqual(dom.attr("node-jurisdiction", "data-value"), "KZ")
        self.assertEqual(dom.attr("node-today", "data-value"), before["today"])
        self.assertEqual(dom.text("node-today"), "November 26, 2026")  # the browser asks for English
        counts = lambda st: [(r["code"], r["count"], r["open"], r["overdue"]) for r in st["regions"]]
        self.assertEqual(counts(before), counts(after))  # nothing moved meanwhile
        self.assert_regions_shown(dom, before, self.stats())
        # Overdue is there to be seen: 3 of 4 in Almaty, 2 of 3 in Astana.
        self.assertEqual(dom.number("region-KZ-75-overdue"), 3)
        self.assertEqual(dom.text("region-KZ-71-overdue-share"), "67%")
        self.assertIn("od-high", dom.attr("region-KZ-75", "class"))
        # Jurisdictions outside this federation are drawn, marked so.
        self.assertIn("absent", dom.attr("region-KZ-35", "class"))
        self.assertEqual(dom.text("region-KZ-35-count"), "—")
        # Replication: every peer and origin, with numbers between the two API reads.
        for b, a in zip(before["cluster"]["peers"], after["cluster"]["peers"]):
            code = b["jurisdiction"]
            self.assertEqual(dom.text(f"peer-{code}-reachable"), "yes" if b["reachable"] else "no")
            self.assertLessEqual(b["records_in"], dom.number(f"peer-{code}-records-in"))
            self.assertLessEqual(dom.number(f"peer-{code}-records-in"), a["records_in"])
            for tid, field in (("errors", "errors"), ("refused", "refused_records")):
                self.assertLessEqual(b[field], dom.number(f"peer-{code}-{tid}"))
                self.assertLessEqual(dom.number(f"peer-{code}-{tid}"), a[field])
        self.assertEqual({p["jurisdiction"] for p in before["cluster"]["peers"]},
                         set(CODES) - {"KZ"})
        for b, a in zip(before["cluster"]["origins"], after["cluster"]["origins"]):
            code = b["jurisdiction"]
            self.assertLessEqual(b["local_seq"], dom.number(f"origin-{code}-held"))
            self.assertLessEqual(dom.number(f"origin-{code}-held"), a["local_seq"])
            self.assertIn(dom.number(f"origin-{code}-lag"), (b["lag_records"], a["lag_records"]))
            self.assertEqual(dom.text(f"origin-{code}-frozen"), "no")
        self.assertEqual(dom.number("forks-count"), 0)
        self.assertEqual(int(dom.attr("alerts-count", "data-value")), len(before["alerts"]))
        self.assertFalse(dom.shown("stale-banner"))
        self.assertFalse(dom.shown("fork-banner"))

    def test_screenshot(self):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, "dashboard.png")
        if os.path.exists(path):
            os.remove(path)
        chromium(self.base + "/", f"--screenshot={path}", "--window-size=1366,900",
                 "--hide-scrollbars")
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(path), 20000)

    def test_nothing_from_outside_the_node(self):
        status, ctype, page = get(self.base + "/")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/html"), ctype)
        page = page.decode()
        assets = re.findall(r'(?:src|href)="([^"]*)"', page)
        self.assertIn("/dashboard.js", assets)
        self.assertIn("/dashboard.css", assets)
        texts = {"/": page}
        for a in assets:
            if a.startswith("/") and not a.startswith("//"):
                s, _, body = get(self.base + a)
                self.assertEqual(s, 200, a)
                texts[a] = body.decode()
            else:
                self.assertRegex(a, r"^(data:|#|\?lang=(kk|ru|en)$)", "an asset from outside the node")
        texts["dom"] = chromium(self.base + "/", "--dump-dom", budget_ms=3000)
        own = re.compile(r"https?://(127\.0\.0\.1|localhost)(:\d+)?(/|$)")
        for name, text in texts.items():
            for url in re.findall(r"https?://[^\s\"'<>)]*", text):
                self.assertRegex(url, own, f"external URL in {name}")
            self.assertNotRegex(text, r"@import|url\(\s*['\"]?(https?:)?//", name)

    def test_healthz_and_metrics(self):
        status, ctype, body = get(self.base + "/healthz")
        self.assertEqual(status, 200)
        h = json.loads(body)
        self.assertEqual((h["status"], h["jurisdiction"]), ("ok", "KZ"))
        status, _, body = get(self.base + "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"# TYPE", body)

    def test_stale_data_is_marked(self):
        """The node stops after serving the page and its first data: the page
        keeps the numbers, marked stale. A fresh load with the node gone says
        there is no data."""
        kz = self.fed.members["KZ"]
        expected, stats = get_json(self.base + "/api/status"), self.stats()
        os.makedirs(ARTIFACTS, exist_ok=True)
        outage = Proxy(self.base, on_status=lambda n: n >= 2)  # the node stays up
        try:
            chromium(outage.url, f"--screenshot={os.path.join(ARTIFACTS, 'dashboard-stale.png')}",
                     "--window-size=1366,900", "--hide-scrollbars")
        finally:
            outage.stop()
        stopped = {}

        def stop_node(n):
            if n == 2 and kz.proc is not None:  # the first refresh after the page loaded
                stopped["rc"] = kz.stop()

        proxy = Proxy(self.base, on_status=stop_node)
        try:
            dom = Dom(chromium(proxy.url, "--dump-dom"))
            self.assertEqual(stopped.get("rc"), 0, getattr(kz, "stderr", "")[-3000:])
            self.assertGreaterEqual(proxy.status_calls, 2)
            self.assertEqual(dom.attr("refresh-status", "data-state"), "stale")
            self.assertIn("stale", dom.text("refresh-status").lower())
            self.assertTrue(dom.shown("stale-banner"))
            self.assertIn("stale", dom.text("stale-banner").lower())
            body = next(a for tag, a in dom.attrs if tag == "body")
            self.assertIn("is-stale", body.get("class", ""))
            self.assertTrue(dom.text("data-age"))
            self.assert_regions_shown(dom, expected, stats)  # the last data, still shown
            chromium(proxy.url, f"--screenshot={os.path.join(ARTIFACTS, 'dashboard-nodata.png')}",
                     "--window-size=1366,900", "--hide-scrollbars", budget_ms=3000)
            dom = Dom(chromium(proxy.url, "--dump-dom", budget_ms=3000))
            self.assertEqual(dom.attr("refresh-status", "data-state"), "error")
            self.assertIn("cannot reach", dom.text("refresh-status").lower())
            self.assertEqual(dom.text("region-KZ-75-count"), "—")
            self.assertIn("absent", dom.attr("region-KZ-75", "class"))
            self.assertEqual(set(p.split("?")[0] for p in proxy.paths),
                             {"/", "/dashboard.js", "/dashboard.css", "/i18n.json", "/api/status"})
        finally:
            proxy.stop()
            if kz.proc is None:
                kz.start("--http", self.http["KZ"])


if __name__ == "__main__":
    unittest.main()
