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
import sys
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
        if rc != 0:  # a sanitizer's report, a failed stop: say it where the test's output is
            sys.stderr.write(f"{self.juris} exited {rc} at stop; the end of its stderr:\n"
                             f"{self.stderr[-6000:]}\n")
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
        # Every SIGKILL before the first wait: killed one by one, the ones
        # still alive redial each dead peer every second, and with 201
        # processes on two cores that storm made each teardown take seconds.
        for p in self.procs:
            if p.poll() is None:
                p.kill()
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


# -- large federations: regions, offices under them, a sparse topology --------
#
# Used by `tools/bench reach`, tests/integration/test_reach.py and
# `tools/federation up --regions R --offices M`. The national node KZ and the
# regions form a sparse mesh (a ring plus chords, region_mesh); each office
# is linked to its region only. Offices that are to be cut are reached
# through their own appeal-faultproxy processes (FaultProxy).


class FaultProxy:
    """One appeal-faultproxy process: listen -> 127.0.0.1:target, a control
    port; its log in `log_path`. Started from the calling thread (with
    `tied`, it dies with that thread: start proxies from the main thread)."""

    def __init__(self, bin_dir, target_port, name, log_path, tied=True):
        self.target = target_port
        self.port = port_block(1)
        self.control = port_block(1)
        self.name = name
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [os.path.join(bin_dir, "appeal-faultproxy"), "--listen",
                 f"127.0.0.1:{self.port}", "--to", f"127.0.0.1:{target_port}",
                 "--control", f"127.0.0.1:{self.control}", "--name", name],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                preexec_fn=die_with_parent if tied else None)

    def cmd(self, *words, check=True, timeout=5):
        try:
            with socket.create_connection(("127.0.0.1", self.control), timeout=timeout) as s:
                s.sendall((" ".join(str(w) for w in words) + "\n").encode())
                reply = s.makefile().readline().strip()
        except OSError as e:
            reply = f"error {e}"
        if check and not reply.startswith("ok"):
            raise RuntimeError(f"proxy {self.name}: {' '.join(map(str, words))}: {reply}")
        return reply

    def wait_ready(self, timeout=10):
        end = time.time() + timeout
        while not self.cmd("status", check=False).startswith("ok"):
            if self.proc.poll() is not None or time.time() > end:
                raise RuntimeError(f"proxy {self.name} did not start")
            time.sleep(0.05)

    def status(self):
        """The `status` reply as a dict of its key=value words."""
        words = self.cmd("status").split()[1:]
        return dict(w.split("=", 1) for w in words if "=" in w)


def region_mesh(codes, chord=None):
    """The sparse mesh of the national node and the regions: a ring over
    `codes` in order, plus a chord from every node i to i + chord (default
    about a third of the way round, so that any two are at most about n/6 +
    2 hops apart). Returns directed edges (a, b), each link once: a dials b."""
    n = len(codes)
    if n < 2:
        return []
    edges = set()
    for i in range(n):
        edges.add((i, (i + 1) % n))
    chord = chord if chord is not None else max(2, n // 3)
    if n > 4:
        for i in range(n):
            edges.add((i, (i + chord) % n))
    out, seen = [], set()
    for a, b in sorted(edges):
        if a != b and frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            out.append((codes[a], codes[b]))
    return out


def office_code(region, k, dotted=True):
    """The jurisdiction of office k (0-based) under `region` (KZ-NN): with
    `dotted`, REGION.KATO (9 digits: the region's two, the district k+1,
    then zeros; e.g. KZ-75.750100000); without, REGION + a letter (KZ-75A),
    for builds that know no offices."""
    nn = region.split("-")[1]
    if dotted:
        return f"{region}.{nn}{k + 1:02d}00000"
    return f"{region}{chr(ord('A') + k)}"


class Reach(Federation):
    """A federation of `regions` regions (the first of tools/data/kz-regions.tsv
    after the central bodies), the national node KZ among them in the mesh,
    and `offices` offices spread evenly over the regions (office i under
    region i mod regions). `cut` lists the offices whose link to their region
    runs through fault proxies (`cut_share` of them, every k-th, by default).

    Topology: with `dial` (the cluster file's `dial JURIS` lines), one
    cluster file; each office dials its region and has no peer address; the
    mesh edges are dialled by their first end. Without (builds that dial
    every node with an address), each node gets its own cluster file in
    which only its neighbours have addresses, so it dials exactly them."""

    def __init__(self, root, bin_dir, regions=20, offices=180, cut_share=1 / 3,
                 heartbeat_ms=0, node_args=(), tied=True, dial=True, dotted=True, chord=None):
        juris = [j["code"] for j in jurisdictions(regions + 1)]
        self.national, self.regions = juris[0], juris[1:]
        self.parent = {}
        for i in range(offices):
            r = self.regions[i % regions]
            self.parent[office_code(r, i // regions, dotted)] = r
        self.offices = list(self.parent)
        every = round(1 / cut_share) if cut_share > 0 else 0
        self.cut = [o for i, o in enumerate(self.offices) if every and i % every == 0]
        self.mesh = region_mesh(juris, chord)
        self.dial = dial
        self.proxies = {}  # office: [FaultProxy], its link to its region
        super().__init__(root, juris + self.offices, bin_dir, heartbeat_ms=heartbeat_ms,
                         node_args=node_args, tied=tied)

    def edges(self):
        """Every link (dialler, dialled): the mesh, then office -> region."""
        return self.mesh + [(o, r) for o, r in self.parent.items()]

    def neighbours(self, code):
        return {b if a == code else a for a, b in self.edges() if code in (a, b)}

    def init(self, workers=4):
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as pool:  # appeal-node init: no process kept
            list(pool.map(lambda m: m.init(), self.members.values()))
        self.write_reach_cluster()
        return self

    def _entry(self, m, addresses=True, via=None, dials=()):
        """m's entry: its keys, its addresses (through proxies `via`:
        [peer proxy, pub proxy]) or none, its dial lines."""
        keep = [l for l in m.entry.splitlines()
                if l.strip() and not l.strip().startswith(("peer ", "pub ", "query "))]
        if addresses:
            peer = via[0].port if via else m.peer_port
            pub = via[1].port if via else m.peer_port + 1
            keep += [f"  peer tcp://127.0.0.1:{peer}", f"  pub tcp://127.0.0.1:{pub}",
                     f"  query tcp://127.0.0.1:{m.peer_port + 2}"]
        keep += [f"  dial {d}" for d in dials]
        return "\n".join(keep) + "\n"

    def _proxy_pair(self, office, target, name):
        log = os.path.join(self.root, f"proxy-{office}.log")
        pair = [FaultProxy(self.bin_dir, target.peer_port, f"{name}-peer", log, self.tied),
                FaultProxy(self.bin_dir, target.peer_port + 1, f"{name}-pub", log, self.tied)]
        for p in pair:
            self.procs.append(p.proc)
        self.proxies.setdefault(office, []).extend(pair)
        return pair

    def write_reach_cluster(self):
        """The cluster file(s) of the topology, and the proxies of the cut
        offices (started here, in normal mode: cut them before the nodes
        start to keep the offices apart from the beginning)."""
        dials = {}
        for a, b in self.edges():
            dials.setdefault(a, []).append(b)
        head = "# A federation of regions and offices, written by tools/fedlib.py (Reach)\n"
        if self.dial:
            parts = [head]
            for m in self.members.values():
                parts.append(self._entry(m, m.juris not in self.parent, None,
                                         dials.get(m.juris, ())))
            with open(self.cluster_file, "w") as f:
                f.write("\n".join(parts))
            for o in self.cut:
                region = self.members[self.parent[o]]
                via = self._proxy_pair(o, region, f"{o}-to-{region.juris}")
                parts = [head]
                for m in self.members.values():
                    parts.append(self._entry(m, m.juris not in self.parent,
                                             via if m is region else None,
                                             dials.get(m.juris, ())))
                path = os.path.join(self.root, f"cluster-{o}.conf")
                with open(path, "w") as f:
                    f.write("\n".join(parts))
                self.members[o].cluster_file = path
        else:
            self.write_cluster()  # every address: the trust store for tools (receipts)
            via = {}  # (dialler, dialled): proxies
            for o in self.cut:
                r = self.parent[o]
                via[(o, r)] = self._proxy_pair(o, self.members[r], f"{o}-to-{r}")
                via[(r, o)] = self._proxy_pair(o, self.members[o], f"{r}-to-{o}")
            for m in self.members.values():
                near = self.neighbours(m.juris) | {m.juris}
                parts = [head] + [self._entry(n, n.juris in near, via.get((m.juris, n.juris)))
                                  for n in self.members.values()]
                path = os.path.join(self.root, f"cluster-{m.juris}.conf")
                with open(path, "w") as f:
                    f.write("\n".join(parts))
                m.cluster_file = path
        for pair in self.proxies.values():
            for p in pair:
                p.wait_ready()

    def proxy_cmd(self, office, *words):
        return [p.cmd(*words) for p in self.proxies.get(office, [])]

    def start(self, *extra, batch=8, timeout=120, office_args=()):
        """Starts the nodes `batch` at a time (each batch answering before
        the next starts: 200 processes on 2 cores), regions first; offices
        get `office_args` too."""
        ms = list(self.members.values())
        for i in range(0, len(ms), batch):
            for m in ms[i:i + batch]:
                more = list(office_args) if m.juris in self.parent else []
                m.start(*extra, *more, wait=False)
            for m in ms[i:i + batch]:
                m.wait_ready(timeout)
        return self
