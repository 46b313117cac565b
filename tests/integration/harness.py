"""Test harness: real appeal-node processes on loopback, driven through the
real command-line tools. Every process started here is stopped at the end
of its test (and, as a last resort, when the interpreter exits)."""

import atexit
import datetime
import sys
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("APPEAL_SOURCE", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import fedlib  # noqa: E402
BIN = os.environ.get("APPEAL_BIN", os.path.join(SOURCE, "build", "bin"))
NODE = os.path.join(BIN, "appeal-node")
CTL = os.path.join(BIN, "appealctl")
RAWREQ = os.path.join(BIN, "rawreq")

_live = []


def _reap():
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_reap)


def free_port():
    """A port free on 127.0.0.1 right now, chosen at random below the
    kernel's ephemeral range (so no outgoing connection takes it meanwhile)."""
    return fedlib.port_block(1)


def kz_ms(text):
    """Milliseconds since the epoch of a local Kazakhstan time (UTC+5),
    "2026-11-27 10:00"."""
    t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M")
    t = t.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    return int(t.timestamp() * 1000)


class NodeError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Node:
    """One node: a data directory and, while started, a process."""

    def __init__(self, juris="KZ-75", clock=None, root=None):
        self.juris = juris
        self.root = root or tempfile.mkdtemp(prefix=f"appeal-{juris}-")
        self.dir = os.path.join(self.root, juris)
        self.proc = None
        self.port = None
        self.clock_file = None
        self.log_path = os.path.join(self.root, f"{juris}.log")
        out = subprocess.run([NODE, "init", "--data", self.dir, "--jurisdiction", juris],
                             capture_output=True, text=True, check=True)
        self.entry = out.stdout
        self.keys = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                self.keys[parts[0]] = parts[1]
        if clock is not None:
            self.set_clock(clock)

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def set_clock(self, when):
        """Sets the node's clock: ms since the epoch, or "YYYY-MM-DD HH:MM"
        local time. The node reads the file on every use."""
        ms = kz_ms(when) if isinstance(when, str) else int(when)
        self.clock_file = self.clock_file or os.path.join(self.root, f"{self.juris}.clock")
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(ms))
        os.replace(tmp, self.clock_file)

    def start(self, *extra, port=None, wait=True):
        self.port = port or self.port or free_port()
        args = [NODE, "run", "--data", self.dir, "--api", self.url, "--log-file", self.log_path]
        if self.clock_file:
            args += ["--clock-file", self.clock_file]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=fedlib.die_with_parent)
        _live.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.juris} exited: {self.proc.stderr.read()}")
            rc, _, _ = self.ctl_raw("info", timeout_ms=1000)
            if rc == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.juris} did not answer within {timeout}s")

    def stop(self):
        """SIGTERM and wait: returns the exit status (0 for a clean stop;
        sanitizer reports make it non-zero)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        _live.remove(self.proc)
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL; raises if the node had already exited at a sanitizer
        report (fedlib.SANITIZER_EXIT)."""
        if self.proc is None:
            return
        p, gone = self.proc, self.proc.poll()
        p.kill()
        p.wait()
        p.stderr.close()
        _live.remove(p)
        self.proc = None
        if gone == fedlib.SANITIZER_EXIT:
            fedlib.check_sanitizer_exit(self.juris, p)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- tools --

    @property
    def admin_key(self):
        """The administrator's key: every role on this node."""
        return os.path.join(self.dir, "admin.key")

    def ctl_raw(self, *args, timeout_ms=15000, key=None):
        """appealctl ARGS signed with `key` (default: the admin's; "" unsigned)."""
        key = self.admin_key if key is None else key
        sign = ["--key", key] if key else []
        env = {k: v for k, v in os.environ.items() if k != "APPEAL_KEY"}
        p = subprocess.run([CTL, "--node", self.url, "--timeout", str(timeout_ms), *sign, *args],
                           capture_output=True, text=True, env=env)
        return p.returncode, p.stdout, p.stderr

    def ctl(self, *args, key=None):
        """appealctl --json ARGS: the parsed answer, or NodeError."""
        rc, out, err = self.ctl_raw("--json", *args, key=key)
        if rc == 0:
            return json.loads(out)
        if rc == 1 and out.strip():
            e = json.loads(out)["error"]
            raise NodeError(e["code"], e["message"])
        raise RuntimeError(f"appealctl {' '.join(args)}: exit {rc}: {err.strip()}")

    def file(self, type_="statement", category="0002.0001", subject="Pension recalculation",
             name="Aigerim Bekova", iin="900101300126", *extra):
        args = ["file", "--type", type_, "--category", category, "--subject", subject]
        if name is not None:
            args += ["--applicant-name", name]
        if iin is not None:
            args += ["--applicant-iin", iin]
        return self.ctl(*args, *extra)

    def info(self):
        return self.ctl("info")

    def raw(self, data, sign=True):
        """Sends bytes as a request; with `sign`, signed with the admin's key
        when they decode as a ClientRequest (to reach the checks behind)."""
        p = subprocess.run([RAWREQ, self.url] + ([self.admin_key] if sign else []), input=data,
                           capture_output=True)
        if p.returncode == 3:
            return None
        return json.loads(p.stdout)

    def offline(self, command, *extra):
        p = subprocess.run([NODE, command, "--data", self.dir, *extra], capture_output=True,
                           text=True)
        return p.returncode, p.stdout + p.stderr

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


# -- protobuf wire format, for hand-made (and broken) requests --

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):
    """An int (varint) or bytes/str (length-delimited) field."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def request(op_field, op_body, version=1):
    """A ClientRequest wrapping a Request with one operation."""
    req = field(1, version) + field(2, int(time.time() * 1000)) + field(3, os.urandom(16))
    req += field(op_field, op_body)
    return field(1, req)


def file_request(*args, version=1, **kw):
    """A ClientRequest filing an appeal (see file_body)."""
    return request(10, file_body(*args, **kw), version=version)


def file_body(type_=1, category="0002.0001", subject="Subject", name="Name Surname",
              iin=None, body=None):
    """A FileRequest; None leaves a field out."""
    b = field(1, type_) + field(2, category)
    if subject is not None:
        b += field(3, subject)
    if body is not None:
        b += field(4, body)
    if name is not None:
        b += field(5, name)
    if iin is not None:
        b += field(6, iin)
    return b


# -- federations: tools/fedlib.py, shared with tools/federation --


FAULTPROXY = os.path.join(BIN, "appeal-faultproxy")


def federation(codes, heartbeat_ms=60000, node_args=(), tls=False):
    """An initialised (not started) local federation in a temporary
    directory; call .start(), and always .kill_all() and cleanup. Heartbeats
    are rare by default so that logs stand still once replication is done
    (tests of convergence compare heads); tests of freshness ask for more.
    With tls, every address is tls+tcp:// (fedlib makes the certificates)."""
    root = tempfile.mkdtemp(prefix="appeal-fed-")
    fed = fedlib.Federation(root, codes, BIN, heartbeat_ms=heartbeat_ms, node_args=node_args,
                            tls=tls, tied=True)
    fed.init()
    return fed


def close_federation(test, fed):
    """Stops every member (a clean stop is asserted: exit 0 each), kills
    what is left and removes the federation's directory."""
    rcs = fed.stop()
    fed.kill_all()
    shutil.rmtree(fed.root, ignore_errors=True)
    test.assertTrue(all(rc == 0 for rc in rcs.values()), rcs)


def identical_logs(fed, codes=None):
    """Per origin (seq, head hash) as each member holds it: equal dicts mean
    identical logs, record for record."""
    out = {}
    for code in codes or fed.members:
        st = fed.members[code].ctl("cluster", "status")
        out[code] = {o["jurisdiction"]: (o["local_seq"], o["head_hash"]) for o in st["origins"]}
    return out


def wait_for(pred, timeout=60, step=0.1, what="condition"):
    """Polls pred() until it is true; an exception counts as "not yet"."""
    end = time.time() + timeout
    last = None
    while True:
        try:
            v = pred()
        except Exception as e:  # not replicated yet, node restarting, ...
            v, last = None, e
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}" +
                                 (f" (last error: {last})" if last else ""))
        time.sleep(step)


class Proxy:
    """One appeal-faultproxy process: listen -> target, with a control port."""

    def __init__(self, target_port):
        self.port = free_port()
        self.control = free_port()
        self.proc = subprocess.Popen(
            [FAULTPROXY, "--listen", f"127.0.0.1:{self.port}", "--to", f"127.0.0.1:{target_port}",
             "--control", f"127.0.0.1:{self.control}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fedlib.die_with_parent)
        _live.append(self.proc)
        wait_for(lambda: self.cmd("status", check=False).startswith("ok"), 10,
                 what="fault proxy control port")

    def cmd(self, *words, check=True):
        try:
            with socket.create_connection(("127.0.0.1", self.control), timeout=5) as s:
                s.sendall((" ".join(str(w) for w in words) + "\n").encode())
                reply = s.makefile().readline().strip()
        except OSError as e:
            reply = f"error {e}"
        if check and not reply.startswith("ok"):
            raise RuntimeError(f"proxy {' '.join(map(str, words))}: {reply}")
        return reply

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc in _live:
            _live.remove(self.proc)


def proxied_links(fed):
    """Gives every member its own cluster file in which each other member is
    reached through fault proxies (one for pulls, one for pushes) for that
    directed link. Returns {(a, b): [pull_proxy, push_proxy]}, a dialling b."""
    links = {}
    for a in fed.members.values():
        def rewrite(m, entry, a=a):
            if m is a:
                return entry
            pair = [Proxy(m.peer_port), Proxy(m.peer_port + 1)]
            links[(a.juris, m.juris)] = pair
            keep = [l for l in entry.splitlines()
                    if not l.strip().startswith(("peer ", "pub ", "query "))]
            keep += [f"  peer tcp://127.0.0.1:{pair[0].port}",
                     f"  pub tcp://127.0.0.1:{pair[1].port}",
                     f"  query tcp://127.0.0.1:{m.peer_port + 2}"]
            return "\n".join(keep) + "\n"
        path = os.path.join(fed.root, f"cluster-{a.juris}.conf")
        fed.write_cluster(path, rewrite)
        a.cluster_file = path
    return links


def link(links, a, b, *command):
    """Applies a proxy command to both directions of the link a <-> b."""
    for key in ((a, b), (b, a)):
        for p in links[key]:
            p.cmd(*command)


def stop_proxies(links):
    for pair in links.values():
        for p in pair:
            p.stop()
