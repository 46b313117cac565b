"""A hostile peer changes nothing.

tests/tools/rogue.c speaks the peer protocol with a real node key that the
cluster file lists (KZ-62) and lies in one way per mode. The honest nodes
KZ and KZ-75 pull from it and subscribe to it like any peer. After each
mode: both hold exactly the logs they held before (and agree), KZ's store
verifies (KZ-75's once more at the end), the lie is counted against KZ-62
and logged with its reason, and KZ still converges with KZ-75 and answers
clients.

The rogue answers every second pull validly and empty (--honest-every 2):
a patient attacker that keeps the victims' backoff at zero so that they
keep asking. Its valid answers being accepted is also the proof that it
speaks the node's dialect, so attacks are refused for what they carry.

One federation serves all tests (heartbeats off, so logs change only when
a test files an appeal). One test restarts KZ with a cluster file that
reaches KZ-75 through fault proxies, to hold KZ behind while the rogue
offers it real records."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import BIN, NODE, Proxy, federation, wait_for

ROGUE = os.path.join(BIN, "rogue")
ROGUE_SECONDS_MAX = 60      # the rogue stops itself after this, whatever happens
EVIDENCE_TIMEOUT_S = 20     # for a mode to show its effect (sanitizer builds are slow)
CONVERGE_TIMEOUT_S = 30
ATTACKS_MIN = 2             # attack answers KZ must have received in each mode
LOG_EVENTS = re.compile(r"event=(pull_failed|records_refused) peer=KZ-62 |event=push_refused ")

# mode: (what KZ's status for peer KZ-62 must show, reason in KZ's log, what it tests)
#   refused: refused_records grows; errors: errors grows (the message is
#   refused before any record is looked at); harmless: nothing is required
#   but that nothing changed.
MODES = {
    "forged": ("refused", r"bad signature",
               "the last record of each run altered (its signature fails), plus records "
               "continuing each held chain signed by the rogue"),
    "broken-link": ("refused", r"record out of order", "two records of each run swapped"),
    "tampered": ("refused", r"hash link broken",
                 "record 0 of each run altered: only the chain protects it"),
    "gap": ("refused", r"run starts at seq", "runs starting 2 above the requester's mark"),
    "replay": ("harmless", None, "the source's records from seq 1 (a node may refuse the "
               "answer as a gap; nothing may change)"),
    "unknown-origin": ("refused", r"not in (the|our) cluster file",
                       "a valid chain of a key no cluster file lists"),
    "wrong-genesis": ("refused", r"genesis does not match the cluster file",
                      "a validly signed chain of KZ-62 whose genesis names another jurisdiction"),
    "too-many": ("errors", r"too many elements in field records",
                 "a valid run of PULL_RECORDS_MAX + 1 records"),
    "oversized": ("harmless", None,
                  "a message past REPL_RECV_BYTES_MAX: nng drops it, the request is resent"),
    "garbage": ("errors", r"malformed", "random bytes"),
    "bad-sig": ("errors", r"bad signature on a message from KZ-62",
                "valid records in a message whose signature is corrupted"),
    "impersonate": ("errors", r"not by the peer asked|bad signature on a message from KZ-75",
                    "valid records in a message claiming KZ-75's key as sender"),
    "stale": ("errors", r"off our clock", "valid records in a message an hour old"),
    "mixed": ("refused", r"bad signature",
              "valid runs followed by a forged one: the whole answer must be refused"),
    "fake-fork": ("harmless", None,
                  "conflicts naming altered or forged versions of held records: no fork"),
}


def file_on(m, n, prefix):
    """Files n appeals on m at once; their numbers."""
    def one(i):
        return m.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                     f"{prefix} {i}", "--applicant-name", "Aigerim Bekova", "--applicant-iin",
                     "900101300126")["number"]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def peer_of(status, juris="KZ-62"):
    return next(p for p in status["peers"] if p["jurisdiction"] == juris)


def logs_of(status):
    """Per origin (seq, head hash): equal for identical logs (as harness.identical_logs)."""
    return {o["jurisdiction"]: (o["local_seq"], o["head_hash"]) for o in status["origins"]}


def verified_origins(member):
    rc, out = member.offline("verify")
    m = re.search(r"of (\d+) origins", out)
    return rc, out, int(m.group(1)) if m else None


class Rogue:
    """One rogue process; its stdout goes to a file the test reads."""

    def __init__(self, root, key, args, name):
        self.out_path = os.path.join(root, f"rogue-{name}.out")
        self.err_path = os.path.join(root, f"rogue-{name}.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([ROGUE, "--key", key, *args], stdout=out, stderr=err)

    def lines(self):
        with open(self.out_path) as f:
            return f.read().splitlines()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def answers(self, key_hex, kind="attack"):
        head = f"answer to={key_hex[:16]} kind={kind} "
        return [line for line in self.lines() if line.startswith(head)]

    def stop(self, timeout=15):
        """SIGTERM; the exit status, or "hung"."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"


class RoguePeer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fed = federation(["KZ", "KZ-75", "KZ-62"], heartbeat_ms=0)
        cls.rogues = []
        try:
            cls.kz, cls.almaty = cls.fed.members["KZ"], cls.fed.members["KZ-75"]
            cls.spare = cls.fed.members["KZ-62"]  # its node never runs: the rogue takes its place
            for m in (cls.kz, cls.almaty):
                m.start(wait=False)
            for m in (cls.kz, cls.almaty):
                m.wait_ready()
            file_on(cls.almaty, 2, "Before the rogue")
            cls.wait_converged()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for r in cls.rogues:
            r.stop()
        rcs = cls.fed.stop()
        verify = {m.juris: m.offline("verify") for m in (cls.kz, cls.almaty)}
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)
        bad = {c: rc for c, rc in rcs.items() if c != "KZ-62" and rc not in (0, None)}
        if bad:
            said = {c: (cls.fed.members[c].stderr or "")[-3000:] for c in bad}
            raise AssertionError(f"nodes did not stop cleanly (sanitizer report?): {bad} {said}")
        unverified = {c: out for c, (rc, out) in verify.items() if rc != 0}
        if unverified:
            raise AssertionError(f"stores do not verify at the end: {unverified}")

    def tearDown(self):
        for r in list(self.rogues):  # a failed test's rogue must not hold the port
            r.stop()
            self.rogues.remove(r)

    # -- helpers --

    @classmethod
    def both(cls, fn):
        """fn(member) on KZ and KZ-75 at once (each tool call costs a process
        start, which sanitizer builds make slow): {juris: result}."""
        members = (cls.kz, cls.almaty)
        with ThreadPoolExecutor(len(members)) as pool:
            return dict(zip((m.juris for m in members), pool.map(fn, members)))

    @classmethod
    def statuses(cls):
        return cls.both(lambda m: m.ctl("cluster", "status"))

    @classmethod
    def logs(cls):
        return {c: logs_of(st) for c, st in cls.statuses().items()}

    @classmethod
    def wait_converged(cls):
        """Waits until KZ and KZ-75 hold identical logs; their statuses."""
        def same():
            st = cls.statuses()
            return logs_of(st["KZ"]) == logs_of(st["KZ-75"]) and st
        return wait_for(same, CONVERGE_TIMEOUT_S, what="KZ and KZ-75 to hold identical logs")

    def start_rogue(self, mode, name=None):
        args = ["--listen-peer", self.spare.peer,
                "--listen-pub", f"tcp://127.0.0.1:{self.spare.peer_port + 1}",
                "--source", self.almaty.peer, "--mode", mode,
                "--seconds", str(ROGUE_SECONDS_MAX), "--honest-every", "2"]
        r = Rogue(self.fed.root, os.path.join(self.spare.dir, "sign.key"), args, name or mode)
        self.rogues.append(r)
        wait_for(lambda: r.proc.poll() is not None or any(
            line.startswith("ready ") for line in r.lines()), 30, what=f"rogue {mode} to start")
        self.assertIsNone(r.proc.poll(), f"rogue {mode} exited: {r.stderr()}")
        return r

    def stop_rogue(self, r):
        rc = r.stop()
        self.rogues.remove(r)
        self.assertEqual(rc, 0, f"the rogue did not exit cleanly: {r.stderr()}")
        done = [line for line in r.lines() if line.startswith("done ")]
        self.assertEqual(len(done), 1, r.lines()[-3:])
        return done[0]

    def log_lines(self, member, offset):
        return [line for line in member.log()[offset:].splitlines() if LOG_EVENTS.search(line)]

    def assert_verifies(self, member, status, what):
        """`appeal-node verify` passes, and finds no origin beyond those the
        cluster status shows held (records of an unknown origin would add one)."""
        rc, out, origins = verified_origins(member)
        self.assertEqual(rc, 0, f"{what}: {member.juris} does not verify: {out}")
        held = sum(1 for o in status["origins"] if o["local_seq"] > 0)
        self.assertEqual(origins, held, f"{what}: {member.juris} holds another origin: {out}")

    def assert_unchanged(self, before, what):
        """Both nodes hold what they held before (`before`: their statuses)
        and KZ verifies (KZ-75 holds the same heads; its store is verified
        at the end). Returns their statuses now."""
        now = self.statuses()
        for c in ("KZ", "KZ-75"):
            self.assertEqual(logs_of(now[c]), logs_of(before[c]), f"{what}: {c}'s logs changed")
            self.assertEqual(now[c]["forks"], [], f"{what}: {c} recorded a fork")
            frozen = [o["jurisdiction"] for o in now[c]["origins"] if o["frozen"]]
            self.assertEqual(frozen, [], f"{what}: {c} froze origins")
        self.assert_verifies(self.kz, before["KZ"], what)
        return now

    def assert_converges(self, what):
        """A new appeal on KZ-75 reaches KZ; both agree, appeal for appeal;
        KZ answers clients."""
        number = file_on(self.almaty, 1, f"During {what}")[0]
        self.wait_converged()
        lists = self.both(lambda m: {i["number"]: i["status"] for i in
                                     m.ctl("list", "--owner", "KZ-75", "--limit", "1000")["items"]})
        self.assertIn(number, lists["KZ"], f"KZ does not hold {number} during {what}")
        self.assertEqual(lists["KZ"], lists["KZ-75"])

    # -- the attacks --

    def attack(self, mode):
        """Runs the rogue in `mode` and checks, while it still attacks, that
        nothing changed, that the lies were counted and logged, and that KZ
        still converges; then that the rogue stops cleanly."""
        expect, reason, _ = MODES[mode]
        file_on(self.almaty, 2, f"Before {mode}")
        before = self.wait_converged()
        base = peer_of(before["KZ"])
        offset = len(self.kz.log())
        kz_key = self.kz.keys["sign"]
        t0_ms = int(time.time() * 1000)
        rogue = self.start_rogue(mode)

        # KZ pulls an answer at a time: once the rogue answers KZ's third
        # pull (its second attack), KZ has dealt with the first attack and
        # the valid answer between them, counters and log included.
        def evidence():
            return len(rogue.answers(kz_key)) >= ATTACKS_MIN and (not reason or any(
                re.search(reason, line) for line in self.log_lines(self.kz, offset)))
        try:
            wait_for(evidence, EVIDENCE_TIMEOUT_S, what=f"{mode} to reach KZ")
        except AssertionError:
            pass  # the assertions below say what is missing
        # Nothing changed, anywhere.
        now = self.assert_unchanged(before, mode)
        p = peer_of(now["KZ"])
        self.assertEqual(p["records_in"], base["records_in"],
                         f"{mode}: KZ stored records from the rogue")
        # The attack did reach KZ, and KZ took the rogue's valid answers:
        # the rogue speaks the node's dialect, so refusals are for the lies.
        self.assertGreaterEqual(len(rogue.answers(kz_key)), ATTACKS_MIN, rogue.lines()[-5:])
        self.assertGreaterEqual(p["last_ok_ms"], t0_ms,
                                f"{mode}: KZ accepted none of the rogue's valid answers: {p}")
        # Counted against KZ-62, and logged with the reason.
        if expect == "refused":
            self.assertGreater(p["refused_records"], base["refused_records"], p)
        if expect == "errors":
            self.assertGreater(p["errors"], base["errors"], p)
        if reason:
            lines = self.log_lines(self.kz, offset)
            self.assertTrue(any(re.search(reason, line) for line in lines),
                            f"{mode}: no log line matching {reason!r} in:\n" + "\n".join(lines))
        # Life goes on, under attack and after it.
        self.assert_converges(mode)
        self.stop_rogue(rogue)
        self.wait_converged()

    def test_real_records_while_behind(self):
        """With KZ cut off from KZ-75, the rogue offers KZ real KZ-75 records
        it lacks: altered (forged), or intact beside a forged run (mixed).
        KZ takes none of them, then gets them from KZ-75 once the link heals."""
        pull_proxy, push_proxy = Proxy(self.almaty.peer_port), Proxy(self.almaty.peer_port + 1)
        proxies = (pull_proxy, push_proxy)

        def rewrite(m, entry):
            if m is not self.almaty:
                return entry
            keep = [line for line in entry.splitlines()
                    if not line.strip().startswith(("peer ", "pub ", "query "))]
            keep += [f"  peer tcp://127.0.0.1:{pull_proxy.port}",
                     f"  pub tcp://127.0.0.1:{push_proxy.port}",
                     f"  query tcp://127.0.0.1:{self.almaty.peer_port + 2}"]
            return "\n".join(keep) + "\n"
        path = os.path.join(self.fed.root, "cluster-KZ-proxied.conf")
        self.fed.write_cluster(path, rewrite)
        self.assertEqual(self.kz.stop(), 0, self.kz.stderr)
        self.kz.cluster_file = path
        numbers = []
        try:
            self.kz.start()
            before_cut = logs_of(self.wait_converged()["KZ"])
            for p in proxies:
                p.cmd("cut")
            numbers = file_on(self.almaty, 3, "While KZ is cut off")
            time.sleep(0.5)
            held = self.logs()["KZ"]
            self.assertEqual(held["KZ-75"], before_cut["KZ-75"], "the cut did not hold")
            for mode in ("forged", "mixed"):
                self.offer_real_records(mode, held)
            for p in proxies:
                p.cmd("heal")
            for number in numbers:
                wait_for(lambda n=number: self.kz.ctl("show", n), CONVERGE_TIMEOUT_S,
                         what=f"KZ to get {number} from KZ-75 after the link healed")
            st = self.wait_converged()
            self.assert_verifies(self.kz, st["KZ"], "after the partition")
        finally:
            rc = self.kz.stop()
            for p in proxies:
                p.stop()
            self.kz.cluster_file = self.fed.cluster_file
            self.kz.start()
        self.assertEqual(rc, 0, self.kz.stderr)
        self.wait_converged()

    def offer_real_records(self, mode, held):
        kz_key = self.kz.keys["sign"]
        base = peer_of(self.kz.ctl("cluster", "status"))
        rogue = self.start_rogue(mode, name=f"{mode}-behind")

        def real_offered():
            return len([line for line in rogue.answers(kz_key)
                        if not line.split("real_above=")[1].startswith("0 ")]) >= ATTACKS_MIN
        wait_for(real_offered, EVIDENCE_TIMEOUT_S, what=f"{mode}: real KZ-75 records offered")
        st = self.kz.ctl("cluster", "status")
        self.assertEqual(logs_of(st), held, f"{mode}: KZ took records from the rogue while cut off")
        p = peer_of(st)
        self.assertTrue(p["errors"] > base["errors"] or
                        p["refused_records"] > base["refused_records"], p)
        self.stop_rogue(rogue)

    def test_unknown_peer_is_refused(self):
        """A key that is not in the cluster file gets an error, not records;
        the listed key (KZ-62's) gets an answer."""
        root = tempfile.mkdtemp(prefix="appeal-stranger-")
        try:
            stranger = os.path.join(root, "KZ-63")
            subprocess.run([NODE, "init", "--data", stranger, "--jurisdiction", "KZ-63"],
                           capture_output=True, check=True)
            offset = len(self.kz.log())
            p = subprocess.run([ROGUE, "--key", os.path.join(stranger, "sign.key"),
                                "--pull", self.kz.peer], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("error: unknown peer", p.stdout)
            self.assertIn("runs: 0\n", p.stdout)
            wait_for(lambda: re.search(r"event=pull_refused .*unknown peer",
                                       self.kz.log()[offset:]), 10,
                     what="KZ to log the refused pull")
            known = subprocess.run([ROGUE, "--key", os.path.join(self.spare.dir, "sign.key"),
                                    "--pull", self.kz.peer], capture_output=True, text=True,
                                   timeout=30)
            self.assertEqual(known.returncode, 0, known.stderr)
            self.assertIn("error: \n", known.stdout)
            self.assertRegex(known.stdout, r"runs: [1-9]")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _mode_test(mode):
    def test(self):
        self.attack(mode)
    test.__doc__ = f"{mode}: {MODES[mode][2]}"
    return test


for _mode in MODES:
    setattr(RoguePeer, "test_mode_" + _mode.replace("-", "_"), _mode_test(_mode))


if __name__ == "__main__":
    unittest.main()
