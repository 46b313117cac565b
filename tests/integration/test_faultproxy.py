"""The fault proxy (appeal-faultproxy) between a threaded Python echo server
and Python clients, all real processes on loopback: bytes pass intact, and
each fault (cut, blackhole, delay, reset) does to the connections what
docs/faultproxy.md says. Timing is only ever bounded from below."""

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BIN, free_port

PROXY = os.path.join(BIN, "appeal-faultproxy")
TIMEOUT_S = 5  # any single wait for the proxy or the echo server

_live = []


def _reap():
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_reap)


class EchoServer:
    """Echoes every byte back, one thread per connection; on EOF it
    half-closes in turn, so a client can send, shut down and read it all."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.lock = threading.Lock()
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(data)
        except OSError:
            pass

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self.sock.close()
        self.thread.join(TIMEOUT_S)
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


class Proxy:
    """One appeal-faultproxy process; its stderr goes to a file."""

    def __init__(self, upstream_port, *extra):
        self.port = free_port()
        self.cport = free_port()
        self.control = f"127.0.0.1:{self.cport}"
        fd, self.log_path = tempfile.mkstemp(prefix="faultproxy-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(
                [PROXY, "--listen", f"127.0.0.1:{self.port}", "--to",
                 f"127.0.0.1:{upstream_port}", "--control", self.control, *extra],
                stdout=subprocess.DEVNULL, stderr=log)
        _live.append(self.proc)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited {self.proc.returncode}: {self.log()}")
            try:
                if self.ctl("status").startswith("ok"):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"proxy did not answer within {TIMEOUT_S}s: {self.log()}")

    def ctl(self, line):
        """Sends one command line on the control port; returns the reply."""
        with socket.create_connection(("127.0.0.1", self.cport), timeout=TIMEOUT_S) as s:
            s.sendall(line.encode() + b"\n")
            return read_line(s)

    def status(self):
        reply = self.ctl("status")
        words = reply.split()
        assert words[0] == "ok", reply
        return {k: (v if k == "mode" else int(v)) for k, v in (w.split("=") for w in words[1:])}

    def wait_status(self, **want):
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            st = self.status()
            if all(st[k] == v for k, v in want.items()) or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)

    def stop(self):
        """SIGTERM and wait: the exit status (0 for a clean stop)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _live.remove(self.proc)
        os.unlink(self.log_path)


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1024)
        if not chunk:
            break
        buf += chunk
    return buf.decode().rstrip("\n")


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def roundtrip(s, data):
    s.sendall(data)
    return recv_exact(s, len(data))


def closed_by_peer(s):
    """True if the peer closed (EOF) or reset the connection in time."""
    s.settimeout(TIMEOUT_S)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def connect_fails(proxy):
    """True if a new connection through `proxy` is refused, reset (even
    before connect() returns) or closed at once, as with a dead link."""
    try:
        with proxy.connect() as s:
            try:
                s.sendall(b"anyone?")
            except (BrokenPipeError, ConnectionResetError):
                return True
            return closed_by_peer(s)
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def echo_all(s, data):
    """Sends `data` and half-closes from a thread while reading the echo
    until EOF: a transfer larger than every buffer on the way."""
    errors = []

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=send)
    t.start()
    got = bytearray()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    t.join()
    if errors:
        raise errors[0]
    return bytes(got)


class FaultProxy(unittest.TestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)
        self.proxy = self.start_proxy(self.echo.port)

    def start_proxy(self, upstream_port, *extra):
        p = Proxy(upstream_port, *extra)
        self.addCleanup(self.stop_proxy, p)
        return p

    def stop_proxy(self, p):
        if p.proc.poll() is None:
            rc = p.stop()
        else:
            rc = p.proc.returncode
        log = p.log()
        p.cleanup()
        self.assertEqual(rc, 0, f"proxy exited with {rc}:\n{log[-4000:]}")
        self.assertNotIn("Sanitizer", log)
        self.assertNotIn("runtime error", log)

    def test_data_passes_intact(self):
        with self.proxy.connect() as s:
            self.assertEqual(roundtrip(s, b"hello"), b"hello")
            big = os.urandom(4 * 1024 * 1024 + 7)
            # Half-close: the server sees EOF only after every byte, and
            # the client reads the whole echo after shutting down writing.
            self.assertEqual(echo_all(s, big), big)
        st = self.proxy.wait_status(conns=0)
        self.assertEqual(st["bytes_up"], len(big) + 5)
        self.assertEqual(st["bytes_down"], len(big) + 5)
        self.assertIn("event=conn_closed", self.proxy.log())

    def test_many_connections_at_once(self):
        n, size = 40, 256 * 1024
        failures = []

        def client(i):
            try:
                data = os.urandom(size)
                with self.proxy.connect() as s:
                    if echo_all(s, data) != data:
                        failures.append(f"client {i}: echo differs")
            except Exception as e:  # reported below, with the client's number
                failures.append(f"client {i}: {e!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])
        st = self.proxy.wait_status(conns=0)
        self.assertEqual(st["conns"], 0)
        self.assertEqual(st["bytes_up"], n * size)
        self.assertEqual(st["bytes_down"], n * size)

    def test_cut_closes_links_until_heal(self):
        s = self.proxy.connect()
        self.addCleanup(s.close)
        self.assertEqual(roundtrip(s, b"up"), b"up")
        self.assertEqual(self.proxy.ctl("cut"), "ok mode=cut closed=1")
        self.assertTrue(closed_by_peer(s), "an open connection survived the cut")
        # New connections: the kernel may complete the handshake, but the
        # proxy closes them at once.
        self.assertTrue(connect_fails(self.proxy), "a new connection stayed open during cut")
        st = self.proxy.status()
        self.assertEqual((st["mode"], st["conns"]), ("cut", 0))
        self.assertEqual(self.proxy.ctl("heal"), "ok mode=normal conns=0")
        with self.proxy.connect() as s3:
            self.assertEqual(roundtrip(s3, b"back"), b"back")
        log = self.proxy.log()
        self.assertIn("reason=cut", log)
        self.assertIn("event=mode_changed from=normal to=cut", log)

    def test_blackhole_hangs_until_heal(self):
        s = self.proxy.connect()
        self.addCleanup(s.close)
        self.assertEqual(roundtrip(s, b"before"), b"before")
        self.assertTrue(self.proxy.ctl("blackhole").startswith("ok mode=blackhole"))
        s.sendall(b"lost")
        s.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            s.recv(100)
        # A connection opened now hangs too, and never reaches the server.
        accepted = self.echo.accepted
        s2 = self.proxy.connect()
        self.addCleanup(s2.close)
        s2.sendall(b"x")
        s2.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            s2.recv(100)
        self.assertEqual(self.echo.accepted, accepted)
        st = self.proxy.status()
        self.assertEqual((st["mode"], st["conns"]), ("blackhole", 2))
        self.assertTrue(self.proxy.ctl("heal").startswith("ok mode=normal"))
        # Same connections, still open; what was sent in the hole is gone.
        s.settimeout(TIMEOUT_S)
        s2.settimeout(TIMEOUT_S)
        self.assertEqual(roundtrip(s, b"after"), b"after")
        self.assertEqual(roundtrip(s2, b"y"), b"y")

    def test_delay_adds_latency_each_way(self):
        with self.proxy.connect() as s:
            self.assertEqual(roundtrip(s, b"warm"), b"warm")
            self.assertEqual(self.proxy.ctl("delay 200"), "ok delay_ms=200")
            self.assertEqual(self.proxy.status()["delay_ms"], 200)
            t0 = time.monotonic()
            self.assertEqual(roundtrip(s, b"ping"), b"ping")
            # 200 ms on the way there and 200 ms on the way back.
            self.assertGreaterEqual(time.monotonic() - t0, 0.4)
            # Bytes sent after the delay is lifted still wait behind the
            # delayed ones: order is kept.
            self.assertEqual(self.proxy.ctl("delay 300"), "ok delay_ms=300")
            t0 = time.monotonic()
            s.sendall(b"a")
            self.assertEqual(self.proxy.ctl("delay 0"), "ok delay_ms=0")
            s.sendall(b"b")
            self.assertEqual(recv_exact(s, 2), b"ab")
            self.assertGreaterEqual(time.monotonic() - t0, 0.3)
            self.assertEqual(roundtrip(s, b"fast"), b"fast")
        self.assertIn("event=delay_changed from_ms=0 to_ms=200", self.proxy.log())

    def test_rate_limits_bandwidth_each_way(self):
        with self.proxy.connect() as s:
            self.assertEqual(roundtrip(s, b"warm"), b"warm")
            self.assertEqual(self.proxy.ctl("rate 20000"), "ok rate_bytes_per_s=20000")
            self.assertEqual(self.proxy.status()["rate_bytes_per_s"], 20000)
            data = os.urandom(30000)
            t0 = time.monotonic()
            self.assertEqual(roundtrip(s, data), data)  # intact, in order
            # 30 kB up and 30 kB down at 20 kB/s each way, with one burst of
            # 2 kB per direction at the start: at least 1.4 s (not twice:
            # the directions run side by side).
            self.assertGreaterEqual(time.monotonic() - t0, (30000 - 2000) / 20000)
            self.assertEqual(self.proxy.ctl("rate 0"), "ok rate_bytes_per_s=0")
            t0 = time.monotonic()
            self.assertEqual(roundtrip(s, data), data)
        self.assertIn("event=rate_changed from_bytes_per_s=0 to_bytes_per_s=20000",
                      self.proxy.log())
        for bad in ("rate", "rate -1", "rate fast", "rate 1000000001", "rate 1 2"):
            self.assertTrue(self.proxy.ctl(bad).startswith("error"), bad)
        self.assertEqual(self.proxy.status()["rate_bytes_per_s"], 0)

    def test_flap_cuts_and_heals_periodically(self):
        self.assertEqual(self.proxy.ctl("flap 600 400"),
                         "ok flap_up_ms=600 flap_down_ms=400 mode=normal")
        st = self.proxy.status()
        self.assertEqual((st["flap_up_ms"], st["flap_down_ms"], st["mode"]), (600, 400, "normal"))
        s = self.proxy.connect()
        self.addCleanup(s.close)
        self.assertEqual(roundtrip(s, b"up"), b"up")
        # Within the up phase it closes, and the link is down (cut) for a while...
        self.assertTrue(closed_by_peer(s))
        self.assertEqual(self.proxy.wait_status(mode="cut")["mode"], "cut")
        # ...then up again by itself: a new connection works.
        self.assertEqual(self.proxy.wait_status(mode="normal")["mode"], "normal")
        with self.proxy.connect() as s2:
            self.assertEqual(roundtrip(s2, b"again"), b"again")
        # And down again: it keeps flapping.
        self.assertEqual(self.proxy.wait_status(mode="cut")["mode"], "cut")
        self.assertIn("reason=flap", self.proxy.log())
        self.assertEqual(self.proxy.ctl("flap 0 0"), "ok flap=off mode=normal")
        st = self.proxy.status()
        self.assertEqual((st["flap_up_ms"], st["mode"]), (0, "normal"))
        for bad in ("flap", "flap 100", "flap 0 100", "flap x y", "flap 1 2 3"):
            self.assertTrue(self.proxy.ctl(bad).startswith("error"), bad)

    def test_reset_sends_rst_and_keeps_accepting(self):
        s = self.proxy.connect()
        self.addCleanup(s.close)
        self.assertEqual(roundtrip(s, b"hi"), b"hi")
        self.assertEqual(self.proxy.ctl("reset"), "ok reset=1 mode=normal")
        try:
            self.assertEqual(s.recv(1), b"")
        except ConnectionResetError:
            pass
        with self.proxy.connect() as s2:
            self.assertEqual(roundtrip(s2, b"again"), b"again")
        self.assertIn("reason=reset", self.proxy.log())

    def test_status_counts(self):
        self.assertEqual(self.proxy.ctl("status"),
                         "ok mode=normal delay_ms=0 conns=0 bytes_up=0 bytes_down=0 "
                         "rate_bytes_per_s=0 flap_up_ms=0 flap_down_ms=0")
        socks = [self.proxy.connect() for _ in range(3)]
        try:
            for s in socks:
                self.assertEqual(roundtrip(s, b"z" * 1000), b"z" * 1000)
            st = self.proxy.status()
            self.assertEqual(st["conns"], 3)
            self.assertEqual((st["bytes_up"], st["bytes_down"]), (3000, 3000))
        finally:
            for s in socks:
                s.close()
        self.assertEqual(self.proxy.wait_status(conns=0)["conns"], 0)

    def test_bad_commands_get_errors(self):
        bad = ["frobnicate", "delay", "delay abc", "delay -5", "delay 600001", "delay 1 2",
               "cut now", "", "STATUS"]
        with socket.create_connection(("127.0.0.1", self.proxy.cport), timeout=TIMEOUT_S) as s:
            # Pipelined: one reply line per command, in order.
            s.sendall("".join(b + "\n" for b in bad + ["status"]).encode())
            with s.makefile("rb") as f:
                replies = [f.readline().decode().rstrip("\n") for _ in range(len(bad) + 1)]
        for cmd, reply in zip(bad, replies):
            self.assertTrue(reply.startswith("error "), f"{cmd!r}: {reply!r}")
        self.assertIn("unknown command 'frobnicate'", replies[0])
        self.assertTrue(replies[-1].startswith("ok mode=normal delay_ms=0 "), replies[-1])
        with socket.create_connection(("127.0.0.1", self.proxy.cport), timeout=TIMEOUT_S) as s:
            s.sendall(b"x" * 1000 + b"\n")
            self.assertEqual(read_line(s), "error line too long")
            self.assertTrue(closed_by_peer(s))
        # The ctl client: the reply on stdout, exit 0 for ok and 1 otherwise.
        ctl = [PROXY, "ctl", self.proxy.control]
        p = subprocess.run(ctl + ["frobnicate"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith("error unknown command"), p.stdout)
        p = subprocess.run(ctl + ["delay", "50"], capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout), (0, "ok delay_ms=50\n"))
        p = subprocess.run(ctl + ["status"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("delay_ms=50", p.stdout)

    def test_bad_arguments(self):
        port = f"127.0.0.1:{free_port()}"
        cases = [
            [],
            ["--listen", port],
            ["--listen", port, "--to", port, "--control"],
            ["--listen", "127.0.0.1:99999", "--to", port, "--control", port],
            ["--listen", "nocolon", "--to", port, "--control", port],
            ["--listen", port, "--to", port, "--control", port, "--bogus", "1"],
            ["--listen", port, "--to", port, "--control", port, "--conns-max", "0"],
            ["--listen", port, "--to", port, "--control", port, "--name", "two words"],
            ["ctl", port],
            ["ctl", port, "delay", "1", "2"],
        ]
        for args in cases:
            with self.subTest(args=args):
                p = subprocess.run([PROXY, *args], capture_output=True, text=True, timeout=10)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("usage: appeal-faultproxy", p.stderr)
        p = subprocess.run([PROXY, "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: appeal-faultproxy", p.stdout)
        # Nothing listens on `port`: ctl fails with a message, exit 1.
        p = subprocess.run([PROXY, "ctl", port, "status"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot connect", p.stderr)
        # The listening port is taken (by the running proxy): exit 1.
        p = subprocess.run([PROXY, "--listen", f"127.0.0.1:{self.proxy.port}", "--to", port,
                            "--control", f"127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot listen", p.stderr)

    def test_connection_limit(self):
        proxy = self.start_proxy(self.echo.port, "--conns-max", "2", "--name", "KZ-75-to-KZ-11")
        a, b = proxy.connect(), proxy.connect()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(roundtrip(a, b"a"), b"a")
        self.assertEqual(roundtrip(b, b"b"), b"b")
        self.assertTrue(connect_fails(proxy), "a connection past --conns-max stayed open")
        self.assertIn("event=conn_refused", proxy.log())
        self.assertIn("reason=conns_max conns=2 conns_max=2", proxy.log())
        self.assertIn("proxy=KZ-75-to-KZ-11", proxy.log())
        a.close()
        proxy.wait_status(conns=1)
        with proxy.connect() as d:
            self.assertEqual(roundtrip(d, b"d"), b"d")

    def test_upstream_down_fails_the_client(self):
        proxy = self.start_proxy(free_port())  # nothing listens there
        self.assertTrue(connect_fails(proxy), "a client of a dead upstream stayed open")
        self.assertIn("event=upstream_failed", proxy.log())
        self.assertEqual(proxy.wait_status(conns=0)["conns"], 0)

    def test_sigterm_with_open_connections_exits_0(self):
        s = self.proxy.connect()
        self.addCleanup(s.close)
        self.assertEqual(roundtrip(s, b"x"), b"x")
        self.proxy.ctl("delay 100")
        s.sendall(b"in flight")
        self.assertEqual(self.proxy.stop(), 0)
        self.assertTrue(closed_by_peer(s))
        log = self.proxy.log()
        self.assertIn("event=stopping signal=TERM", log)
        self.assertIn("reason=shutdown", log)
        self.assertIn("event=stopped", log)


if __name__ == "__main__":
    unittest.main()
