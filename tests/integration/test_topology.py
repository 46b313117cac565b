"""Topology, not a full mesh (docs/protocol.md 1.2, 5.5): offices behind NAT
dial only their region's node, over one connection used both ways (pull,
then deliver); a region dials another; relaying brings every record to
every node. Membership grows without restarts (SIGHUP)."""

import os
import shutil
import signal
import socket
import subprocess
import unittest

from harness import BIN, federation, identical_logs, wait_for

REGION, OTHER, OFFICE_A, OFFICE_B = "KZ-75", "KZ-71", "KZ-33", "KZ-35"


def file_on(m, n, prefix):
    return [m.ctl("file", "--type", "statement", "--category", "0003.0002", "--subject",
                  f"{prefix} {i}", "--applicant-name", "Aigerim Sadykova")["number"]
            for i in range(n)]


def converged(fed, codes=None):
    logs = identical_logs(fed, codes)
    first = next(iter(logs.values()))
    return all(v == first for v in logs.values()) and len(first) == len(codes or fed.members) \
        and first


def topology(m, entry):
    """Offices: no peer address, dial the region. The region dials OTHER;
    OTHER has no dial line (the full mesh: every node with an address)."""
    lines = entry.splitlines()
    if m.juris in (OFFICE_A, OFFICE_B):
        lines = [l for l in lines if not l.strip().startswith("peer ")] + [f"  dial {REGION}"]
    elif m.juris == REGION:
        lines += [f"  dial {OTHER}"]
    return "\n".join(lines) + "\n"


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


class Topology(unittest.TestCase):
    def setUp(self):
        self.fed = federation([REGION, OTHER, OFFICE_A, OFFICE_B])
        self.fed.write_cluster(rewrite=topology)

    def tearDown(self):
        rcs = {c: m.stop() for c, m in self.fed.members.items() if m.proc is not None}
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def test_offices_dial_only_their_region_and_every_node_gets_every_record(self):
        fed = self.fed
        fed.start()
        region, other, a, b = (fed.members[c] for c in (REGION, OTHER, OFFICE_A, OFFICE_B))
        numbers = {c: file_on(fed.members[c], 3, f"Filed at {c}") for c in fed.members}
        wait_for(lambda: converged(fed), 60, what="every node to hold every record")
        for c, nums in numbers.items():
            for node in (region, other, a, b):
                got = node.ctl("list", "--owner", c, "--limit", "100")["items"]
                self.assertEqual(sorted(nums), sorted(i["number"] for i in got), (c, node.juris))
        # Who dials whom: the offices dial the region only; the region OTHER;
        # OTHER the region (full mesh over the nodes that have an address).
        peers = {c: sorted(p["jurisdiction"] for p in fed.members[c].ctl("cluster", "status")
                           ["peers"]) for c in fed.members}
        self.assertEqual({REGION: [OTHER], OTHER: [REGION], OFFICE_A: [REGION],
                          OFFICE_B: [REGION]}, peers)
        # The offices take no connection at all: they listen on nothing.
        for office in (a, b):
            for port in (office.peer_port, office.peer_port + 1):
                self.assertTrue(refused(port), (office.juris, port))

    def test_an_office_offline_for_long_catches_up_in_one_go(self):
        fed = self.fed
        fed.start()
        region, a = fed.members[REGION], fed.members[OFFICE_A]
        file_on(a, 1, "First")
        wait_for(lambda: converged(fed), 60, what="initial convergence")
        self.assertEqual(0, region.stop())
        offline = file_on(a, 40, "Filed while the region is away")
        filed_elsewhere = file_on(fed.members[OTHER], 5, "Meanwhile in Astana")
        region.start()
        wait_for(lambda: converged(fed), 60, what="convergence after the region returns")
        got = fed.members[OFFICE_B].ctl("list", "--owner", OFFICE_A, "--limit", "100")["items"]
        self.assertTrue(set(offline) <= {i["number"] for i in got})
        got = a.ctl("list", "--owner", OTHER, "--limit", "100")["items"]
        self.assertEqual(sorted(filed_elsewhere), sorted(i["number"] for i in got))


class Membership(unittest.TestCase):
    """A new office joins: the others re-read the cluster file on SIGHUP."""

    def setUp(self):
        self.fed = federation([REGION, OTHER, OFFICE_A, OFFICE_B])
        self.new = self.fed.members[OFFICE_B]
        self.old_file = os.path.join(self.fed.root, "cluster-old.conf")

        def without_new(m, entry):
            return "" if m is self.new else topology(m, entry)
        self.fed.write_cluster(self.old_file, rewrite=without_new)
        self.fed.write_cluster(rewrite=topology)
        for m in self.fed.members.values():
            m.cluster_file = self.fed.cluster_file if m is self.new else self.old_file

    def tearDown(self):
        rcs = {c: m.stop() for c, m in self.fed.members.items() if m.proc is not None}
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def hup(self, m):
        os.kill(m.proc.pid, signal.SIGHUP)

    def test_a_new_office_joins_without_restarting_the_others(self):
        fed = self.fed
        old = [fed.members[c] for c in (REGION, OTHER, OFFICE_A)]
        for m in old:
            m.start()
        file_on(fed.members[OFFICE_A], 2, "Before")
        wait_for(lambda: converged(fed, [REGION, OTHER, OFFICE_A]), 60, what="convergence")
        pids = [m.proc.pid for m in old]
        # A malformed file is refused and the running one kept.
        with open(self.old_file) as f:
            good = f.read()
        with open(self.old_file, "w") as f:
            f.write(good + "\nnode KZ-99\n  sign zz\n")
        self.hup(fed.members[REGION])
        wait_for(lambda: "cluster_reload_refused" in fed.members[REGION].log(), 10,
                 what="the refusal of a malformed file")
        self.assertIn("the running cluster file is kept", fed.members[REGION].log())
        # Another key for the region's own entry is refused too.
        with open(self.old_file, "w") as f:
            f.write(good.replace(fed.members[REGION].keys["sign"], "ab" * 32))
        self.hup(fed.members[REGION])
        wait_for(lambda: fed.members[REGION].log().count("cluster_reload_refused") >= 2, 10,
                 what="the refusal of a changed own key")
        file_on(fed.members[REGION], 1, "Still registering")
        # The new office is added to the file; everyone is told by SIGHUP.
        shutil.copy(fed.cluster_file, self.old_file)
        for m in old:
            self.hup(m)
        for m in old:
            wait_for(lambda m=m: "cluster_reloaded" in m.log(), 10, what=f"{m.juris} reload")
        self.new.start()
        new_numbers = file_on(self.new, 3, "From the new office")
        wait_for(lambda: converged(fed), 60, what="the new office's records everywhere")
        got = fed.members[OTHER].ctl("list", "--owner", OFFICE_B, "--limit", "100")["items"]
        self.assertEqual(sorted(new_numbers), sorted(i["number"] for i in got))
        self.assertEqual(pids, [m.proc.pid for m in old])  # nobody restarted


def metric(port, name):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


class SlowLink(unittest.TestCase):
    """An office files offline, then catches up over a 64 kbit/s link that
    drops every few seconds: batches are compressed, each acknowledged one
    is kept, and it converges."""

    def setUp(self):
        from harness import Proxy
        self.fed = federation([REGION, OFFICE_A])
        region = self.fed.members[REGION]

        def office_only(m, entry):
            return entry if m is region else topology(m, entry)
        self.fed.write_cluster(rewrite=office_only)
        self.proxies = [Proxy(region.peer_port), Proxy(region.peer_port + 1)]
        office_file = os.path.join(self.fed.root, "cluster-office.conf")

        def through_proxies(m, entry):
            entry = office_only(m, entry)
            if m is not region:
                return entry
            keep = [l for l in entry.splitlines()
                    if not l.strip().startswith(("peer ", "pub ", "query "))]
            keep += [f"  peer tcp://127.0.0.1:{self.proxies[0].port}",
                     f"  pub tcp://127.0.0.1:{self.proxies[1].port}"]
            return "\n".join(keep) + "\n"
        self.fed.write_cluster(office_file, rewrite=through_proxies)
        self.fed.members[OFFICE_A].cluster_file = office_file

    def tearDown(self):
        rcs = {c: m.stop() for c, m in self.fed.members.items() if m.proc is not None}
        self.fed.kill_all()
        for p in self.proxies:
            p.stop()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def test_an_office_converges_over_a_slow_flapping_link(self):
        from harness import free_port
        fed = self.fed
        region, office = fed.members[REGION], fed.members[OFFICE_A]
        http = free_port()
        # The region holds about 800 records the office lacks: its first
        # pulls are large, and on loopback fast, so it asks for plain
        # answers (the knob lowers what counts as fast, 64 MiB/s, so that
        # a sanitizer build on a busy machine still does).
        subprocess.run([os.path.join(BIN, "appeal-gen"), "--data", region.dir, "--appeals",
                        "300"], check=True, capture_output=True)
        region.start()
        os.environ["APPEAL_TEST_PLAIN_BYTES_PER_S"] = "1000000"
        try:
            office.start("--batch-bytes", "16384", "--http", f"127.0.0.1:{http}")
        finally:
            del os.environ["APPEAL_TEST_PLAIN_BYTES_PER_S"]
        file_on(office, 1, "Online")
        wait_for(lambda: converged(fed), 60, what="initial convergence")
        self.assertRegex(office.log(), r"event=pull_codec peer=KZ-75 bytes_per_s=\d+ asks=plain")
        plain_at = len(office.log())
        for p in self.proxies:
            p.cmd("cut")
        numbers = file_on(office, 120, "Filed while the link is down")
        for p in self.proxies:
            p.cmd("heal")
            p.cmd("rate", 8000)            # 64 kbit/s each way
            p.cmd("flap", 4000, 1500)      # and it drops every few seconds
        wait_for(lambda: converged(fed), 180, what="convergence over the slow link")
        got = region.ctl("list", "--owner", OFFICE_A, "--limit", "200")["items"]
        self.assertTrue(set(numbers) <= {i["number"] for i in got})
        raw = metric(http, "appeal_wire_raw_bytes_total")
        packed = metric(http, "appeal_wire_packed_bytes_total")
        delivered = metric(http, "appeal_records_delivered_total")
        print(f"\nwire bytes per record: raw {raw / delivered:.0f}, packed {packed / delivered:.0f}"
              f" ({packed / raw:.2f})")
        self.assertGreaterEqual(delivered, 120)
        # The slow link was seen as such: zstd again (docs/protocol.md 5.6).
        self.assertRegex(office.log()[plain_at:],
                         r"event=pull_codec peer=KZ-75 bytes_per_s=\d+ asks=zstd")
        # Filings are mostly ciphertext, signatures and hashes: zstd takes
        # about a third off (measured 0.66), not the half; the
        # deliveries before the link was judged slow went plain.
        self.assertGreater(packed, 0)
        self.assertLess(packed, raw * 0.8)


OFFICE = "KZ-75.751210000"  # an office under KZ-75: region code '.' KATO code
SKEW_MS = 7 * 60 * 1000


class ClockSkew(unittest.TestCase):
    """An office whose clock is 7 min ahead of its region's node refuses to
    register (its deadlines would be wrong); the region's status shows it."""

    def setUp(self):
        try:
            self.fed = federation([REGION, OFFICE])
        except Exception as e:  # this branch's juris_valid without offices
            self.skipTest(f"office jurisdictions not accepted here: {e}")

        def office_dials(m, entry):
            if m.juris != OFFICE:
                return entry
            keep = [l for l in entry.splitlines() if not l.strip().startswith("peer ")]
            return "\n".join(keep + [f"  dial {REGION}"]) + "\n"
        self.fed.write_cluster(rewrite=office_dials)

    def tearDown(self):
        rcs = {c: m.stop() for c, m in self.fed.members.items() if m.proc is not None}
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)

    def set_clock(self, m, ms):
        tmp = m.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(ms))
        os.replace(tmp, m.clock_file)

    def test_office_with_a_wrong_clock_refuses_to_register_and_the_region_sees_it(self):
        import json
        import time
        import urllib.request
        from fedlib import CtlError
        from harness import free_port
        region, office = self.fed.members[REGION], self.fed.members[OFFICE]
        office.clock_file = os.path.join(self.fed.root, "office.clock")
        self.set_clock(office, int(time.time() * 1000) + SKEW_MS)
        http = free_port()
        region.start("--http", f"127.0.0.1:{http}")
        # The office's whole clock is ahead: its records and its messages.
        office.start("--peer-clock-skew-ms", str(SKEW_MS))
        wait_for(lambda: "clock_skew_refusing" in office.log(), 30, what="the office to notice")
        with self.assertRaises(CtlError) as cm:
            file_on(office, 1, "Refused")
        self.assertIn(f"this node's clock is 7 min", cm.exception.message)
        self.assertIn(f"ahead of {REGION}'s: registration refused until the clock is corrected",
                      cm.exception.message)
        st = office.ctl("cluster", "status")
        self.assertEqual(st["clock_ref"], REGION)
        self.assertGreater(st["clock_refused_ms"], SKEW_MS - 60000)

        def region_sees():
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/status", timeout=5) as r:
                c = json.load(r)["cluster"]
            d = [x for x in c["dialers"] if x["jurisdiction"] == OFFICE]
            return d and d[0]["clock_refused"] and d[0]
        d = wait_for(region_sees, 30, what="the region's status to show the office's skew")
        self.assertGreater(d["clock_skew_ms"], SKEW_MS - 60000)
        # The clock is corrected: registration works again.
        self.set_clock(office, int(time.time() * 1000))
        wait_for(lambda: "clock_skew_cleared" in office.log(), 30, what="the office to recover")
        self.assertEqual(1, len(file_on(office, 1, "Accepted")))


if __name__ == "__main__":
    unittest.main()
