"""Limits (docs/operations.md "Limits"): live queries have a bounded queue of
their own and a per-key limit, so they never starve the client API, and
shutdown cancels them; connections are capped and idle or stalled ones
closed, per listener, so the node keeps serving the rest."""

import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import http.client
import socket
import struct

from harness import CTL, Node, federation, free_port, wait_for

LIVE_QUERIES_MAX = 16          # node/base/bounds.h
LIVE_QUERIES_PER_KEY_MAX = 4   # node/base/bounds.h


def keygen(path):
    p = subprocess.run([CTL, "--json", "keygen", "--out", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["key"]


class LiveQueries(unittest.TestCase):
    def test_live_flood_leaves_the_api_free_and_shutdown_cancels_it(self):
        fed = federation(["KZ", "KZ-71", "KZ-75"])
        procs = []
        try:
            fed.start()
            kz = fed.members["KZ"]
            keys = []
            for i in range(5):  # the lowest role allowed to query
                path = os.path.join(fed.root, f"registrar{i}.key")
                kz.ctl("grant", keygen(path), "--role", "registrar", "--label", f"r{i}")
                keys.append(path)
            fed.members["KZ-75"].kill()  # every survey waits out its deadline
            # 70 live queries, more than the 64 API contexts: before the
            # live queue they held every context for deadline x count.
            for k in range(70):
                procs.append(subprocess.Popen(
                    [CTL, "--node", kz.api, "--timeout", "120000", "--key", keys[k % 5], "--json",
                     "stats", "--by", "region", "--live", "--deadline-ms", "30000"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            wait_for(lambda: kz.log().count("live_query_queued") >= LIVE_QUERIES_MAX, 60,
                     what="the live queue full")
            refused = wait_for(lambda: [p for p in procs if p.poll() is not None]
                               if sum(p.poll() is not None for p in procs) >= 70 - LIVE_QUERIES_MAX
                               else None, 60, what="the queries past the limits refused")
            outs = [p.stdout.read() for p in refused]
            messages = [json.loads(o).get("error", {}).get("message", o) for o in outs]
            self.assertTrue(any("too many live queries for this key" in m for m in messages),
                            messages)
            self.assertTrue(any("too many live queries on this node" in m for m in messages),
                            messages)
            # The administrator is answered while the live queries wait.
            self.assertEqual(kz.ctl_raw("info", timeout_ms=10000)[0], 0)
            n = kz.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                       "while live queries wait", "--applicant-name", "A B")["number"]
            self.assertTrue(n)
            pending = [p for p in procs if p.poll() is None]
            self.assertEqual(len(pending), LIVE_QUERIES_MAX)
            # SIGTERM cancels them: a clear answer to each, and a prompt stop.
            t0 = time.time()
            self.assertEqual(kz.stop(timeout=60), 0, kz.stderr)
            self.assertLess(time.time() - t0, 15.0)
            answers = [json.loads(p.communicate(timeout=30)[0])["error"]["message"]
                       for p in pending]
            self.assertEqual([m for m in answers if "shutting down" not in m], [])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.communicate()
            fed.stop()
            fed.kill_all()
            shutil.rmtree(fed.root, ignore_errors=True)


REQ_HELLO = b"\x00SP\x00\x00\x30\x00\x00"  # nng's SP header of a REQ socket


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_by_peer(s):
    """True once the node closed the connection (EOF or reset)."""
    s.settimeout(0)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def stalled_sender(port, declared, sent):
    """A client that starts a message of `declared` bytes, sends `sent` of
    them and stalls."""
    s = socket.create_connection(("127.0.0.1", port))
    try:
        s.sendall(REQ_HELLO)
        s.sendall(struct.pack(">Q", declared) + b"x" * sent)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the node dropped a message past its limit while we sent it
    return s


class Connections(unittest.TestCase):
    def setUp(self):
        self.node = Node()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.node.cleanup()

    def test_stalled_senders_are_bounded_and_closed(self):
        n = self.node.start("--connections-max", "64", "--idle-timeout-ms", "2000")
        base = rss_kib(n.proc.pid)
        # 1 MiB declared: past what the node holds for one message, dropped;
        # 200 KiB declared, 150 KiB sent: held until the idle timeout.
        for k in range(100):
            self.socks.append(stalled_sender(n.port, 1 << 20 if k % 2 else 200 << 10,
                                             (1 << 20) - 4096 if k % 2 else 150 << 10))
        grown = rss_kib(n.proc.pid) - base
        self.assertLess(grown, 48 << 10, "KiB held by 100 stalled senders")
        # The rest is still served: the administrator's request is answered
        # (at worst once the stalled connections time out and free slots).
        self.assertEqual(n.ctl_raw("info", timeout_ms=20000)[0], 0)
        wait_for(lambda: all(closed_by_peer(s) for s in self.socks), 30,
                 what="stalled connections closed")
        self.assertIn("connections_idle_closed", n.log())
        self.assertEqual(n.ctl_raw("info", timeout_ms=5000)[0], 0)


def http_status(port, path="/healthz", timeout=10):
    """GET with Python's own client: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def raw_http(port, data, timeout=10):
    """Sends raw bytes and reads until the node closes: the whole answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    finally:
        s.close()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def gauge(port, name):
    _, text = http_status(port, "/metrics")
    return next(float(line.split()[1]) for line in text.decode().splitlines()
                if line.startswith(name + " "))


class HttpListener(unittest.TestCase):
    """The --http listener (node/service/httpd.c): bounded like the others."""

    def setUp(self):
        self.node = Node()
        self.port = free_port()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.node.cleanup()

    def start(self, *extra):
        return self.node.start("--http", f"127.0.0.1:{self.port}", *extra)

    def connect(self, count):
        for _ in range(count):
            self.socks.append(socket.create_connection(("127.0.0.1", self.port)))

    def test_idle_http_connections_are_closed_and_others_served(self):
        self.start("--connections-max", "400", "--idle-timeout-ms", "2000")
        self.connect(300)
        # All 300 are held (the gauge counts this /metrics request too)...
        wait_for(lambda: gauge(self.port, "appeal_http_connections") >= 301, 10,
                 what="300 idle connections held")
        # ...and a new request is answered meanwhile.
        self.assertEqual(http_status(self.port)[0], 200)
        wait_for(lambda: all(closed_by_peer(s) for s in self.socks), 30,
                 what="idle HTTP connections closed")
        wait_for(lambda: "idle=" in self.node.log(), 10, what="the idle closes logged")
        self.assertEqual(http_status(self.port)[0], 200)

    def test_slowloris_is_cut(self):
        self.start("--idle-timeout-ms", "2000")  # a request must arrive whole within 2 s
        s = socket.create_connection(("127.0.0.1", self.port))
        self.socks.append(s)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer, end = b"", time.time() + 20
        s.settimeout(0.3)
        while time.time() < end:  # one byte of a header at a time, never the end
            try:
                s.sendall(b"X")
                b = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not b:
                break
            answer += b
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
        self.assertEqual(http_status(self.port)[0], 200)  # the others still served

    def test_connection_cap(self):
        self.start("--connections-max", "32", "--idle-timeout-ms", "3000")
        # Idle connections past the cap: the idle longest make room, so at
        # most 32 are held and a new request is answered at once.
        self.connect(72)
        wait_for(lambda: sum(closed_by_peer(s) for s in self.socks) >= 72 - 32, 10,
                 what="connections past the cap closed")
        self.assertEqual(http_status(self.port)[0], 200)
        for s in self.socks:
            s.close()
        self.socks = []
        # 32 requests in progress (heads never finished): one more is
        # answered 503 and closed at once; the others are cut at the
        # request deadline, and then /healthz answers again.
        wait_for(lambda: gauge(self.port, "appeal_http_connections") == 1, 10,
                 what="the idle ones gone")
        for _ in range(32):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            self.socks.append(s)
        try:  # 503, or a reset when the request came after the node closed
            extra = raw_http(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        except ConnectionResetError:
            extra = b"reset"
        self.assertTrue(extra.startswith(b"HTTP/1.1 503 ") or extra == b"reset", extra)
        self.assertFalse(any(closed_by_peer(s) for s in self.socks))
        wait_for(lambda: http_status(self.port, timeout=2)[0] == 200, 20,
                 what="/healthz answered once the stalled requests were cut")
        self.assertIn("refused_cap=", self.node.log())

    def test_descriptor_exhaustion_does_not_spin(self):
        n = self.start("--connections-max", "1000", "--idle-timeout-ms", "60000")
        limit = open_fds(n.proc.pid) + 24
        subprocess.run(["prlimit", "--pid", str(n.proc.pid), f"--nofile={limit}:{limit}"],
                       check=True)
        for _ in range(200):  # more than the descriptors left, far fewer than the cap
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.socks.append(s)
        time.sleep(0.5)  # the connections land (no condition to wait on)
        c0 = cpu_s(n.proc.pid)
        time.sleep(3)
        self.assertLess(cpu_s(n.proc.pid) - c0, 0.6, "CPU seconds in 3 s with descriptors used up")
        wait_for(lambda: "refused_descriptors=" in n.log(), 10, what="the refusals logged")
        for s in self.socks:
            s.close()
        self.socks = []
        wait_for(lambda: http_status(self.port, timeout=2)[0] == 200, 30,
                 what="/healthz answered once the connections closed")
        self.assertEqual(n.ctl_raw("info", timeout_ms=5000)[0], 0)

    def test_malformed_requests_get_4xx_and_the_node_runs_on(self):
        self.start()
        cases = [
            (b"garbage\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
            (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n", 400),
            (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
             b"Content-Length: 2\r\n\r\nab", 400),
            (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
            (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"1\r\na\r\n0\r\n\r\n", 411),
            (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
            (b"GET /no-such-page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
            (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        ]
        for data, want in cases:
            with self.subTest(request=data[:40], want=want):
                answer = raw_http(self.port, data)
                self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % want), answer[:200])
                head = answer.split(b"\r\n\r\n", 1)[0].lower()
                self.assertIn(b"content-length: ", head)
        allow = raw_http(self.port, b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
        self.assertIn(b"Allow: GET, HEAD\r\n", allow)
        self.assertEqual(http_status(self.port)[0], 200)
        self.assertEqual(self.node.ctl_raw("info")[0], 0)

    def test_keep_alive_head_and_http10_with_real_clients(self):
        self.start()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/healthz")
        r = c.getresponse()
        body = r.read()
        self.assertEqual((r.status, r.getheader("Cache-Control")), (200, "no-store"))
        sock = c.sock
        c.request("HEAD", "/healthz")  # the same connection, kept alive
        r = c.getresponse()
        self.assertIs(c.sock, sock)
        self.assertEqual(r.status, 200)
        self.assertEqual(int(r.getheader("Content-Length")), len(body))
        self.assertEqual(r.read(), b"")
        c.request("GET", "/")
        r = c.getresponse()
        self.assertEqual((r.status, r.getheader("Content-Type")), (200, "text/html; charset=utf-8"))
        self.assertIn(b"<html", r.read().lower())
        self.assertIs(c.sock, sock)
        c.close()
        # HTTP/1.0: closed after the answer unless keep-alive is asked for.
        answer = raw_http(self.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(answer.endswith(body), answer)
        curl = shutil.which("curl")
        if curl is None:
            return
        url = f"http://127.0.0.1:{self.port}/healthz"
        p = subprocess.run([curl, "-s", "-o", "/dev/null", "-o", "/dev/null", "-w",
                            "%{http_code}:%{num_connects} ", url, url],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.stdout.split(), ["200:1", "200:0"])  # the second reused the first
        p = subprocess.run([curl, "-s", "-I", url], capture_output=True, text=True, timeout=30)
        self.assertTrue(p.stdout.startswith("HTTP/1.1 200 OK"), p.stdout)
        self.assertIn(f"Content-Length: {len(body)}", p.stdout)


if __name__ == "__main__":
    unittest.main()
