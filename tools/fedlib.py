"""A local federation on loopback: the library behind tools/federation and
the integration tests. Real node processes, real ports, real cluster file.

Ports: each node gets four consecutive free ports: API, then peer (pulls),
peer+1 (pushes) and peer+2 (queries), as the cluster file derives them.

TLS (`Federation(..., tls=True)`): a federation CA is made with the openssl
command in ROOT/ca, each node gets a key and a certificate naming its
jurisdiction in its data directory, and every address is tls+tcp://."""

import atexit
import json
import os
import signal
import socket
import subprocess
import time


def die_with_parent():
    """preexec_fn: the child is killed when the process that started it
    dies (Linux PR_SET_PDEATHSIG), so that a test killed by a timeout
    leaves no node behind."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

# The exit status of a process that ThreadSanitizer stopped at a report
# (TSAN_OPTIONS exitcode=66 halt_on_error=1 in the TSan build:
# tests/CMakeLists.txt). A stop then returns it; a kill of a process
# already gone with it raises, so that no report passes unseen.
SANITIZER_EXIT = 66


def check_sanitizer_exit(name, p):
    """Raises AssertionError when process p exited by itself with
    SANITIZER_EXIT (a status a kill gives is a signal's)."""
    if p.poll() == SANITIZER_EXIT:
        raise AssertionError(f"{name} exited {SANITIZER_EXIT}: a sanitizer report "
                             "(the TSan build keeps them in build/tsan/tsan-reports)")


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGIONS = os.path.join(HERE, "data", "kz-regions.tsv")


def jurisdictions(n):
    """The central bodies, then the three cities, then the regions."""
    rows = []
    with open(REGIONS, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or line.startswith("code\t") or not line.strip():
                continue
            code, name_en, _kk, _ru, centre, kind = line.rstrip("\n").split("\t")
            rows.append({"code": code, "name": name_en, "centre": centre, "kind": kind})
    order = {"central": 0, "city": 1, "region": 2}
    rows.sort(key=lambda r: order[r["kind"]])
    if n > len(rows):
        raise ValueError(f"at most {len(rows)} jurisdictions")
    return rows[:n]


# Below Linux's ephemeral range (32768-60999 by default), so that outgoing
# connections, which take their source ports from it, never take ours.
PORTS_FIRST, PORTS_LAST = 10000, 32000


_claimed = set()  # ports this process handed out
PORT_CLAIMS = os.path.join("/tmp", f"appeal-ports-{os.getuid()}")


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _claim(port):
    """Claims `port` for this process among every process of this user
    (tests run in parallel, benchmarks beside them): a file named after it
    holding our pid. A claim whose process is gone is taken over."""
    path = os.path.join(PORT_CLAIMS, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read() or 0)
            except (OSError, ValueError):
                return False
            if pid == os.getpid() or (pid and _alive(pid)):
                return False
            try:
                os.unlink(path)  # its process is gone
            except OSError:
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _claimed.add(port)
        return True
    return False


def _release_claims():
    for port in _claimed:
        try:
            os.unlink(os.path.join(PORT_CLAIMS, str(port)))
        except OSError:
            pass


atexit.register(_release_claims)


def port_block(count, tries=200):
    """`count` consecutive ports, all free on 127.0.0.1 right now and
    claimed by no other process of ours: two tests running side by side
    never pick the same port, even before their nodes bind it."""
    import random
    os.makedirs(PORT_CLAIMS, mode=0o700, exist_ok=True)
    for _ in range(tries):
        base = random.randint(PORTS_FIRST, PORTS_LAST - count)
        ports = range(base, base + count)
        if any(p in _claimed for p in ports):
            continue
        socks = []
        try:
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        got = [p for p in ports if _claim(p)]
        if len(got) == count:
            return base
        for p in got:
            _claimed.discard(p)
            try:
                os.unlink(os.path.join(PORT_CLAIMS, str(p)))
            except OSError:
                pass
    raise RuntimeError("no block of free ports")


# -- TLS: a federation CA and node certificates, with the openssl command --

TLS_FILES = ("tls-ca.pem", "tls-cert.pem", "tls-key.pem")  # in each node's directory


def _openssl(*args):
    p = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {p.stderr.strip()}")


def _private_file(path):
    """Creates `path` empty with mode 0600, so the key never exists readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def tls_ca(ca_dir, name="Appeals federation CA", days=3650):
    """A federation CA: ca_dir/ca.pem (the certificate every node and client
    trusts) and ca_dir/ca.key (mode 0600; signs node certificates only)."""
    os.makedirs(ca_dir, mode=0o700, exist_ok=True)
    key, cert = os.path.join(ca_dir, "ca.key"), os.path.join(ca_dir, "ca.pem")
    _private_file(key)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", str(days), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert


def tls_node_cert(ca_dir, out_dir, juris, hosts=("127.0.0.1", "localhost"), days=825):
    """A key and a certificate for node `juris`, signed by the CA in ca_dir,
    written with the CA certificate into out_dir as TLS_FILES (key 0600).
    The certificate names the jurisdiction (peers check it) and `hosts`
    (clients check the host of the URL they dial); an IP address is listed
    as a DNS name too, because mbedTLS 2.28 matches names against DNS
    entries only. Returns {"ca", "cert", "key"} paths."""
    ca_pem, cert, key = (os.path.join(out_dir, f) for f in TLS_FILES)
    csr, ext = os.path.join(out_dir, "tls.csr"), os.path.join(out_dir, "tls.ext")
    names = [f"DNS:{juris}"]
    for h in hosts:
        names.append(f"DNS:{h}")
        if h.replace(".", "").isdigit() or ":" in h:
            names.append(f"IP:{h}")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                f"subjectAltName={','.join(names)}\n")
    _private_file(key)
    try:
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={juris}")
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca_dir, "ca.pem"),
                 "-CAkey", os.path.join(ca_dir, "ca.key"), "-set_serial",
                 str(int.from_bytes(os.urandom(8), "big")), "-days", str(days),
                 "-extfile", ext, "-out", cert)
    finally:
        for tmp in (csr, ext):
            if os.path.exists(tmp):
                os.remove(tmp)
    with open(os.path.join(ca_dir, "ca.pem")) as src, open(ca_pem, "w") as dst:
        dst.write(src.read())
    return {"ca": ca_pem, "cert": cert, "key": key}


class Member:
    """One node of a local federation."""

    def __init__(self, fed, juris, base_port):
        self.fed = fed
        self.juris = juris
        self.api_port = base_port
        self.peer_port = base_port + 1
        self.dir = os.path.join(fed.root, juris)
        self.log_path = os.path.join(fed.root, f"{juris}.log")
        self.proc = None
        self.entry = ""
        self.cluster_file = fed.cluster_file
        self.clock_file = None
        self.client_ca = fed.ca_file  # what its appealctl trusts, with TLS

    @property
    def scheme(self):
        return "tls+tcp" if self.fed.tls else "tcp"

    @property
    def api(self):
        return f"{self.scheme}://127.0.0.1:{self.api_port}"

    @property
    def peer(self):
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"

    def tls_args(self):
        """--tls-ca/--tls-cert/--tls-key of its files ([] without TLS)."""
        if not self.fed.tls:
            return []
        ca, cert, key = (os.path.join(self.dir, f) for f in TLS_FILES)
        return ["--tls-ca", ca, "--tls-cert", cert, "--tls-key", key]

    def init(self):
        out = subprocess.run([self.fed.bin("appeal-node"), "init", "--data", self.dir,
                              "--jurisdiction", self.juris, "--peer", self.peer],
                             capture_output=True, text=True, check=True).stdout
        self.entry = out
        self.keys = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("sign", "box"):
                self.keys[parts[0]] = parts[1]
        if self.fed.tls:
            tls_node_cert(self.fed.ca_dir, self.dir, self.juris)

    def start(self, *extra, wait=True):
        args = [self.fed.bin("appeal-node"), "run", "--data", self.dir, "--api", self.api,
                "--cluster", self.cluster_file, "--log-file", self.log_path,
                "--heartbeat-ms", str(self.fed.heartbeat_ms), *self.tls_args()]
        if self.clock_file:
            args += ["--clock-file", self.clock_file]
        args += list(extra) + list(self.fed.node_args)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True,
                                     preexec_fn=die_with_parent if self.fed.tied else None)
        self.fed.procs.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.juris} exited: {self.proc.stderr.read()}")
            if self.ctl_raw("info", timeout_ms=1000)[0] == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.juris} did not answer within {timeout}s")

    def stop(self, timeout=30):
        """SIGTERM and wait; the exit status (0 for a clean stop)."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "hung"
        self.stderr = p.stderr.read()
        p.stderr.close()
        return rc

    def kill(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        gone = p.poll()
        p.kill()
        p.wait()
        p.stderr.close()
        if gone == SANITIZER_EXIT:
            check_sanitizer_exit(self.juris, p)

    @property
    def admin_key(self):
        """The administrator's key: every role on this node."""
        return os.path.join(self.dir, "admin.key")

    def ctl_raw(self, *args, timeout_ms=15000, key=None):
        """appealctl ARGS signed with `key` (default: the admin's; "" unsigned)."""
        key = self.admin_key if key is None else key
        sign = ["--key", key] if key else []
        env = {k: v for k, v in os.environ.items() if k != "APPEAL_KEY"}
        tls = ["--tls-ca", self.client_ca] if self.fed.tls else []
        p = subprocess.run([self.fed.bin("appealctl"), "--node", self.api, "--timeout",
                            str(timeout_ms), *sign, *tls, *args], capture_output=True,
                           text=True, env=env)
        return p.returncode, p.stdout, p.stderr

    def ctl(self, *args, key=None):
        rc, out, err = self.ctl_raw("--json", *args, key=key)
        if rc == 0:
            return json.loads(out)
        if rc == 1 and out.strip():
            e = json.loads(out)["error"]
            raise CtlError(e["code"], e["message"])
        raise RuntimeError(f"{self.juris}: appealctl {' '.join(args)}: exit {rc}: {err.strip()}")

    def offline(self, command, *extra):
        p = subprocess.run([self.fed.bin("appeal-node"), command, "--data", self.dir, *extra],
                           capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class CtlError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Federation:
    def __init__(self, root, codes, bin_dir, heartbeat_ms=10000, node_args=(), tls=False,
                 tied=False):
        self.root = root
        self.tied = tied  # nodes die with this process (tests); else they outlive it
        self.bin_dir = bin_dir
        self.tls = tls  # tls+tcp:// everywhere, certificates from a CA in ROOT/ca
        self.ca_dir = os.path.join(root, "ca")
        self.ca_file = os.path.join(self.ca_dir, "ca.pem")
        self.heartbeat_ms = heartbeat_ms
        self.node_args = list(node_args)
        self.cluster_file = os.path.join(root, "cluster.conf")
        self.procs = []
        os.makedirs(root, exist_ok=True)
        base = port_block(4 * len(codes))
        self.members = {}
        for i, code in enumerate(codes):
            self.members[code] = Member(self, code, base + 4 * i)

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def init(self):
        if self.tls:
            tls_ca(self.ca_dir)
        for m in self.members.values():
            m.init()
        self.write_cluster()
        return self

    def write_cluster(self, path=None, rewrite=None):
        """The cluster file: every member's entry. `rewrite(member, entry)`
        may change what one file says (tests point links at fault proxies)."""
        parts = ["# A local federation, written by tools/fedlib.py\n"]
        for m in self.members.values():
            parts.append(rewrite(m, m.entry) if rewrite else m.entry)
        with open(path or self.cluster_file, "w") as f:
            f.write("\n".join(parts))

    def start(self, *extra):
        for m in self.members.values():
            m.start(*extra, wait=False)
        for m in self.members.values():
            m.wait_ready()
        return self

    def stop(self):
        return {code: m.stop() for code, m in self.members.items()}

    def kill_all(self):
        """Kills every process; then raises if one of them had exited at a
        sanitizer report (after all are killed: none is left behind)."""
        gone = [f"pid {p.pid}" for p in self.procs if p.poll() == SANITIZER_EXIT]
        for m in self.members.values():
            try:
                m.kill()
            except AssertionError:
                pass  # counted above: every process it started is in procs
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if gone:
            raise AssertionError(f"exited {SANITIZER_EXIT} (a sanitizer report; the TSan "
                                 f"build keeps them in build/tsan/tsan-reports): {gone}")

    def heads(self, code):
        """{jurisdiction: seq held} on one member."""
        st = self.members[code].ctl("cluster", "status")
        return {o["jurisdiction"]: o["local_seq"] for o in st["origins"]}

    def converged(self, codes=None):
        codes = codes or list(self.members)
        views = [self.heads(c) for c in codes]
        return all(v == views[0] for v in views), views

    def wait_converged(self, codes=None, timeout=60):
        end = time.time() + timeout
        while True:
            ok, views = self.converged(codes)
            if ok:
                return views[0]
            if time.time() > end:
                raise AssertionError(f"not converged after {timeout}s: {views}")
            time.sleep(0.1)

    def save(self):
        info = {code: {"api": m.api, "peer": m.peer, "data": m.dir, "log": m.log_path,
                       "admin_key": m.admin_key,
                       "pid": m.proc.pid if m.proc else None}
                for code, m in self.members.items()}
        with open(os.path.join(self.root, "federation.json"), "w") as f:
            json.dump({"cluster": self.cluster_file, "nodes": info,
                       "tls_ca": self.ca_file if self.tls else None}, f, indent=2)
