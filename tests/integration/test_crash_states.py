"""Power loss, not only kill -9 (docs/durability.md): a real node files
appeals while libcrashlog.so records, in order, every write and sync it makes
to db/data.mdb, and the client marks each acknowledgement in the same log.
From that log the test builds the files a power loss could leave: everything
before the last sync, plus any subset of the writes made since (some torn at
sector granularity), and checks that each opens, verifies, has derived tables
that match its log, and holds every appeal acknowledged before that moment.
With the syncs made no-ops, the same check must find a lost appeal or a
broken file: that is how the test shows it can fail."""

import json
import os
import random
import re
import shutil
import subprocess
import threading
import unittest

from harness import BIN, CTL, NODE, Node

SHIM = os.path.join(BIN, "libcrashlog.so")
SECTOR = 512
FILERS = 3
APPEALS_PER_FILER = 6
MOMENTS = 12              # crash moments drawn from the op log (after a write)
SUBSETS = 2               # random subsets of the unsynced writes per moment
NOSYNC_MOMENTS = 3


def parse(oplog):
    """The op log as a list of ops: ("W", off, len, at, dsync),
    ("S",), ("N",), ("T", len), ("X", call), ("A", number)."""
    ops = []
    with open(oplog) as f:
        for line in f:
            w = line.split()
            if w[0] == "W":
                ops.append(("W", int(w[1]), int(w[2]), int(w[3]), w[4] == "1"))
            elif w[0] == "T":
                ops.append(("T", int(w[1])))
            elif w[0] in ("S", "N", "X", "A"):
                ops.append((w[0], w[1]))
            else:
                raise AssertionError(f"unknown op log line {line!r}")
    return ops


def apply(img, op, data, sectors=None):
    """Applies one write or truncate to the bytearray `img`; with `sectors`,
    only those 512-byte sectors of the write (a torn write)."""
    if op[0] == "T":
        del img[op[1]:]
        img.extend(b"\0" * (op[1] - len(img)))
        return
    _, off, length, at, _ = op
    chunk = data[at:at + length]
    if len(img) < off + length:
        img.extend(b"\0" * (off + length - len(img)))
    if sectors is None:
        img[off:off + length] = chunk
        return
    for s in sectors:
        lo = max(off, s * SECTOR)
        hi = min(off + length, (s + 1) * SECTOR)
        img[lo:hi] = chunk[lo - off:hi - off]


def crash_states(ops, data, base, k, rng, subsets):
    """The images a power loss at op index k may leave, with a label:
    what the last sync before k made durable (and O_DSYNC writes), plus
    none, all, and `subsets` random subsets of the unsynced writes (one
    of them torn) made since."""
    last_sync = max([i for i in range(k) if ops[i][0] == "S"], default=-1)
    durable = [i for i in range(k) if ops[i][0] in ("W", "T")
               and (i < last_sync or (ops[i][0] == "W" and ops[i][4]))]
    loose = [i for i in range(last_sync + 1, k) if ops[i][0] in ("W", "T") and i not in durable]
    choices = [("none", [])] + ([("all", loose)] if loose else [])
    for n in range(subsets if loose else 0):
        choices.append((f"random{n}", sorted(rng.sample(loose, rng.randint(0, len(loose))))))
    for label, chosen in choices:
        torn = None
        writes = [i for i in chosen if ops[i][0] == "W"]
        if label.startswith("random") and writes:
            torn = rng.choice(writes)
        img = bytearray(base)
        for i in sorted(durable + list(chosen)):
            sectors = None
            if i == torn:
                _, off, length, _, _ = ops[i]
                first, last = off // SECTOR, (off + length - 1) // SECTOR
                all_sectors = list(range(first, last + 1))
                sectors = rng.sample(all_sectors, rng.randint(0, len(all_sectors)))
            apply(img, ops[i], data, sectors)
        yield f"k={k} {label}{' torn' if torn is not None else ''} ({len(chosen)}/{len(loose)} loose)", img


def acked_before(ops, k):
    return {op[1] for op in ops[:k] if op[0] == "A"}


class CrashStates(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(SHIM):
            self.skipTest("libcrashlog.so not built")
        self.node = Node("KZ-75")
        self.oplog = os.path.join(self.node.root, "ops.log")
        self.states = os.path.join(self.node.root, "states")

    def tearDown(self):
        self.node.cleanup()

    def record(self, nosync):
        """Runs the node under the recorder while clients file; returns
        the ops, the written bytes and the data file as it was before."""
        with open(os.path.join(self.node.dir, "db", "data.mdb"), "rb") as f:
            base = f.read()
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": SHIM, "APPEAL_CRASHLOG": self.oplog,
               "APPEAL_CRASHLOG_NOSYNC": "1" if nosync else "0",
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # for the node process Node.start spawns
        try:
            self.node.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
        fd = os.open(self.oplog, os.O_WRONLY | os.O_APPEND)
        errors = []

        def filer(t):
            for n in range(APPEALS_PER_FILER):
                p = subprocess.run(
                    [CTL, "--node", self.node.url, "--key", self.node.admin_key, "--json",
                     "file", "--type", "statement", "--category", "0002.0002",
                     "--subject", f"Queue {t}.{n}", "--applicant-name", "Dana Sarsen"],
                    capture_output=True, text=True)
                if p.returncode != 0:
                    errors.append(p.stderr)
                    continue
                # Written after the answer came: the sync that made it
                # durable is already in the log, before this line.
                os.write(fd, f"A {json.loads(p.stdout)['number']}\n".encode())

        threads = [threading.Thread(target=filer, args=(t,)) for t in range(FILERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.node.kill()  # the file the process leaves is not used
        os.close(fd)
        self.assertEqual(errors, [])
        with open(self.oplog + ".bytes", "rb") as f:
            data = f.read()
        ops = parse(self.oplog)
        self.assertEqual([op for op in ops if op[0] == "X"], [],
                         "a call the test does not model (MDB_WRITEMAP?)")
        self.assertEqual(sum(op[0] == "A" for op in ops), FILERS * APPEALS_PER_FILER)
        return ops, data, base

    def offline(self, d, *args):
        p = subprocess.run([NODE, *args, "--data", d], capture_output=True, text=True,
                           timeout=120)
        return p.returncode, p.stdout, p.stderr

    def check(self, label, img, must_have):
        """Problems of one crash state (empty: it recovers and holds every
        appeal acknowledged before the crash)."""
        d = os.path.join(self.states, "n")
        shutil.rmtree(self.states, ignore_errors=True)
        shutil.copytree(self.node.dir, d, ignore=shutil.ignore_patterns("db", "api.url"))
        os.mkdir(os.path.join(d, "db"), 0o700)
        with open(os.path.join(d, "db", "data.mdb"), "wb") as f:
            f.write(img)
        rc, out, err = self.offline(d, "verify")
        if rc != 0:
            return [f"{label}: verify exit {rc}: {(out + err).strip()[-300:]}"]
        rc, out, err = self.offline(d, "log")
        if rc != 0:
            return [f"{label}: log exit {rc}: {err.strip()[-300:]}"]
        held = set(re.findall(r'"kind":"filed","actor":"[0-9a-f]+","number":"([^"]+)"', out))
        lost = sorted(must_have - held)
        if lost:
            return [f"{label}: lost acknowledged appeals {lost}"]
        rc, before, err = self.offline(d, "dump")
        rc2, _, err2 = self.offline(d, "rebuild")
        rc3, after, _ = self.offline(d, "dump")
        if rc or rc2 or rc3 or before != after:
            return [f"{label}: derived tables differ from the log ({err.strip()} {err2.strip()})"]
        return []

    def states_of(self, ops, data, base, moments, seed):
        rng = random.Random(seed)
        # Just after a write (writes since the last sync are in doubt), or
        # just after a sync.
        points = [i for i in range(1, len(ops)) if ops[i - 1][0] in ("W", "T")]
        points = rng.sample(points, min(moments, len(points)))
        points += [i for i in range(1, len(ops)) if ops[i - 1][0] in ("S", "N")][-2:]
        ks = sorted(set(points)) + [len(ops)]
        for k in ks:
            for label, img in crash_states(ops, data, base, k, rng, SUBSETS):
                yield label, img, acked_before(ops, k)

    def test_every_crash_state_holds_the_acknowledged_appeals(self):
        ops, data, base = self.record(nosync=False)
        self.assertGreater(sum(op[0] == "S" for op in ops), 5)
        problems, checked, torn = [], 0, 0
        for label, img, must in self.states_of(ops, data, base, MOMENTS, seed=10):
            problems += self.check(label, img, must)
            checked += 1
            torn += " torn" in label
        self.assertEqual(problems, [])
        self.assertGreaterEqual(checked, MOMENTS * (2 + SUBSETS))
        self.assertGreater(torn, MOMENTS // 2)
        # One state run as a node: it serves every acknowledged appeal and
        # continues the numbering after them.
        img = next(crash_states(ops, data, base, len(ops), random.Random(1), 0))[1]
        shutil.rmtree(os.path.join(self.node.dir, "db"))
        os.mkdir(os.path.join(self.node.dir, "db"), 0o700)
        with open(os.path.join(self.node.dir, "db", "data.mdb"), "wb") as f:
            f.write(img)
        self.node.start()
        acked = sorted(acked_before(ops, len(ops)))
        for number in acked:
            self.assertEqual(self.node.ctl("show", number)["number"], number)
        new = self.node.file()["number"]
        self.assertEqual(int(new[-6:]), int(acked[-1][-6:]) + 1)
        self.assertEqual(self.node.stop(), 0)

    def test_the_check_finds_a_node_whose_syncs_do_nothing(self):
        ops, data, base = self.record(nosync=True)
        self.assertEqual(sum(op[0] == "S" for op in ops), 0)
        self.assertGreater(sum(op[0] == "N" for op in ops), 5)
        problems = []
        for label, img, must in self.states_of(ops, data, base, NOSYNC_MOMENTS, seed=10):
            problems += self.check(label, img, must)
        self.assertNotEqual(problems, [], "unsynced writes passed as durable: the test is blind")
        self.assertTrue(any("lost acknowledged" in p or "verify" in p for p in problems),
                        problems)


if __name__ == "__main__":
    unittest.main()
