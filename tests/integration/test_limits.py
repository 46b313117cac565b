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

import socket
import struct

from harness import CTL, Node, federation, wait_for

LIVE_QUERIES_MAX = 16          # node/bounds.h
LIVE_QUERIES_PER_KEY_MAX = 4   # node/bounds.h


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
    s.sendall(REQ_HELLO)
    s.sendall(struct.pack(">Q", declared) + b"x" * sent)
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

    def test_connection_cap_and_descriptor_exhaustion(self):
        n = self.node.start("--connections-max", "32", "--idle-timeout-ms", "3000")
        subprocess.run(["prlimit", "--pid", str(n.proc.pid), "--nofile=96:96"], check=True)
        for _ in range(150):  # more than the cap, and than the descriptors
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", n.port))
            self.socks.append(s)
        time.sleep(0.5)  # the connections land (no condition to wait on)
        c0 = cpu_s(n.proc.pid)
        time.sleep(3)
        self.assertLess(cpu_s(n.proc.pid) - c0, 1.5, "CPU seconds in 3 s with descriptors used up")
        for s in self.socks:
            s.close()
        self.socks = []
        wait_for(lambda: n.ctl_raw("info", timeout_ms=3000)[0] == 0, 30,
                 what="answering again once the connections dropped")


if __name__ == "__main__":
    unittest.main()
