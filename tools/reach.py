"""The reach simulation: a federation of regions and offices on poor links
(issue 16), shared by `tools/bench reach` and tests/integration/test_reach.py.

One run (`simulate`):
  1. A Reach federation (tools/fedlib.py): the national node KZ and the
     regions in a sparse mesh, offices dialling their region, the cut
     offices' links through fault proxies, cut before the nodes start.
  2. Filing on every office, signed by the office's administrator key
     (appealctl): `per_office` appeals each; the first assigned and the
     second answered, so that the aggregates hold more than one status.
     The cut offices register offline.
  3. The cut offices stay cut while the rest converges (at least `hold_s`).
  4. Their links return, throttled (`rate_kbit`, when the proxy can) with
     periodic outages (`outage_every_s`, `outage_s`): the proxy's own
     schedule when it has one, else cut and heal from here.
  5. Convergence: every node polled (cluster status) until it holds every
     origin's head; the time each node and, on KZ, each office's log got
     there.
  6. Idle: CPU and memory of every node from /proc over `idle_s`.
  7. Checks: identical logs everywhere (per origin seq and head hash, equal
     to the origin's own), `appeal-node verify` on every node (or a sample),
     KZ's aggregates equal a recount of its records, and every acknowledged
     number is among KZ's filed records.
Returns a dict of figures and check results (`failures` lists what failed).
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import fedlib  # noqa: E402
import recount  # noqa: E402

STATS_BY = (["region", "status"], ["type"], ["region", "type", "status"], ["office"])
TYPES = ("statement", "request", "complaint", "proposal", "feedback")
CATEGORIES = ("0002.0001", "0002.0003", "0003.0001", "0005.0002", "0004.0001")
POLL_WORKERS = 4


def has_dial(root=os.path.dirname(HERE)):
    """The source tree's cluster file parser knows `dial` lines."""
    with open(os.path.join(root, "cluster", "clusterfile.c")) as f:
        return '"dial"' in f.read()


def has_offices(bin_dir):
    """appeal-node init takes an office's jurisdiction (REGION.KATO)."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="appeal-probe-")
    try:
        p = subprocess.run([os.path.join(bin_dir, "appeal-node"), "init", "--data",
                            os.path.join(tmp, "n"), "--jurisdiction", "KZ-75.750100000"],
                           capture_output=True)
        return p.returncode == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def say(log, text):
    if log:
        log(text)


def _file_office(fed, office, n):
    """Files n appeals on `office`; returns (numbers acknowledged, time of the
    last acknowledgement)."""
    m = fed.members[office]
    numbers = []
    for k in range(n):
        r = m.ctl("file", "--type", TYPES[k % len(TYPES)], "--category",
                  CATEGORIES[(k + len(numbers)) % len(CATEGORIES)], "--subject",
                  f"Road in {office}, appeal {k}", "--applicant-name", "Aigerim Bekova")
        numbers.append(r["number"])
    if n >= 1:
        m.ctl("assign", numbers[0], "--to", "Department")
    if n >= 2:
        m.ctl("answer", numbers[1], "--outcome", "explained", "--text", "Explained")
    return numbers, time.time()


def file_everywhere(fed, per_office, workers=POLL_WORKERS):
    with ThreadPoolExecutor(workers) as pool:
        got = dict(zip(fed.offices, pool.map(lambda o: _file_office(fed, o, per_office),
                                             fed.offices)))
    return {o: g[0] for o, g in got.items()}, {o: g[1] for o, g in got.items()}


def origins_of(m):
    st = m.ctl("cluster", "status")
    return {o["jurisdiction"]: (o["local_seq"], o["head_hash"]) for o in st["origins"]}


def own_heads(fed):
    """{origin: (seq, head hash)} as each origin holds its own log."""
    with ThreadPoolExecutor(POLL_WORKERS) as pool:
        views = dict(zip(fed.members, pool.map(origins_of, fed.members.values())))
    return {c: views[c][c] for c in fed.members}


def converged_part(fed, codes, heads):
    """True when every node of `codes` holds every origin of `codes` up to
    `heads`."""
    for c in codes:
        v = origins_of(fed.members[c])
        if any(v.get(o, (0, ""))[0] < heads[o][0] for o in codes):
            return False
    return True


class Outages(threading.Thread):
    """Periodic outages from here (for proxies without their own schedule):
    every `every_s` the links of `offices` are cut for `down_s`, then healed."""

    def __init__(self, fed, offices, every_s, down_s):
        super().__init__(daemon=True)
        self.fed, self.offices, self.every_s, self.down_s = fed, offices, every_s, down_s
        self.stopping = threading.Event()
        self.count = 0

    def run(self):
        while not self.stopping.wait(self.every_s - self.down_s):
            for o in self.offices:
                self.fed.proxy_cmd(o, "cut")
            self.count += 1
            self.stopping.wait(self.down_s)
            for o in self.offices:
                self.fed.proxy_cmd(o, "heal")

    def stop(self):
        self.stopping.set()
        self.join()
        for o in self.offices:
            self.fed.proxy_cmd(o, "heal")


def proxy_features(fed):
    """Which of the link commands the fault proxy knows (docs/faultproxy.md):
    probed with harmless values on one proxy, then undone."""
    if not fed.proxies:
        return set()
    p = next(iter(fed.proxies.values()))[0]
    have = set()
    if p.cmd("rate", 0, check=False).startswith("ok"):
        have.add("rate")
    if p.cmd("flap", 0, 0, check=False).startswith("ok"):
        have.add("outages")
    return have


def return_links(fed, rate_kbit, every_s, down_s, features, pull_share=None):
    """Heals every cut office's link, throttled (its proxies, one per
    connection, share `rate_kbit` each way: evenly, or `pull_share` of it
    to the pull connection (the first proxy) and the rest to the push
    one: each proxy has a bucket of its own, so a fixed split stands for
    the one link), with outages (`flap`, which starts with the up phase);
    returns the Outages thread when they are driven from here (else
    None)."""
    for o in fed.cut:
        if "rate" in features:  # bytes/s each way, the link's rate shared by its proxies
            total = rate_kbit * 1000 // 8
            ps = fed.proxies[o]
            if pull_share is None or len(ps) != 2:
                fed.proxy_cmd(o, "rate", total // len(ps))
            else:
                ps[0].cmd("rate", int(total * pull_share))
                ps[1].cmd("rate", total - int(total * pull_share))
        fed.proxy_cmd(o, "heal")
        if "outages" in features and every_s:  # up first, then down, and so on
            fed.proxy_cmd(o, "flap", (every_s - down_s) * 1000, down_s * 1000)
    if every_s and "outages" not in features and fed.cut:
        t = Outages(fed, fed.cut, every_s, down_s)
        t.start()
        return t
    return None


class Watch(threading.Thread):
    """Polls the national node's cluster status every `step_s`: for each
    origin, the times its seq there changed."""

    def __init__(self, m, step_s=0.5):
        super().__init__(daemon=True)
        self.m, self.step_s = m, step_s
        self.seen = {}  # origin: [(time, seq)]
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(self.step_s):
            try:
                v = origins_of(self.m)
            except Exception:
                continue
            now = time.time()
            for o, (seq, _) in v.items():
                h = self.seen.setdefault(o, [])
                if not h or h[-1][1] != seq:
                    h.append((now, seq))

    def reached(self, origin, seq):
        """When the node was first seen holding `seq` of `origin` (or None)."""
        return next((t for t, s in self.seen.get(origin, []) if s >= seq), None)

    def stop(self):
        self.stopping.set()
        self.join()


def wait_everywhere(fed, heads, t0, timeout, log=None):
    """Polls the nodes until each holds every origin up to `heads`. Returns
    {node: seconds after t0 it was first seen complete}; raises on timeout."""
    done = {}
    end = time.time() + timeout
    last_report = 0
    while True:
        todo = [c for c in fed.members if c not in done]
        if not todo:
            return done

        def check(c):
            v = origins_of(fed.members[c])
            now = time.time() - t0
            return c, now, all(v.get(o, (0, ""))[0] >= s for o, (s, _) in heads.items())
        with ThreadPoolExecutor(POLL_WORKERS) as pool:
            for c, now, ok in pool.map(check, todo):
                if ok:
                    done[c] = now
        if time.time() > end:
            raise AssertionError(f"not converged {timeout}s after the links returned: "
                                 f"{len(todo)} nodes behind, e.g. {sorted(todo)[:5]}")
        if log and time.time() - last_report > 10:
            last_report = time.time()
            say(log, f"  {time.time() - t0:.0f} s: {len(done)}/{len(fed.members)} nodes complete")
        time.sleep(0.2)


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read().rsplit(")", 1)[1].split()
    return int(s[11]) + int(s[12])


def _mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def idle_figures(fed, seconds):
    """CPU (% of one core) and memory (MB) of every node over `seconds`
    without load: median and max per kind (national, region, office)."""
    pids = {c: m.proc.pid for c, m in fed.members.items()}
    t0 = {c: _cpu_ticks(p) for c, p in pids.items()}
    start = time.time()
    time.sleep(seconds)
    wall = time.time() - start
    hz = os.sysconf("SC_CLK_TCK")
    per = {}
    for c, p in pids.items():
        mem = _mem_kb(p)
        per[c] = {"cpu_pct": 100.0 * (_cpu_ticks(p) - t0[c]) / hz / wall,
                  "rss_mb": mem.get("VmRSS", 0) / 1024, "anon_mb": mem.get("RssAnon", 0) / 1024,
                  "pss_mb": mem.get("Pss", 0) / 1024, "threads": mem.get("Threads", 0)}
    out = {"seconds": round(wall, 1)}
    kinds = {"national": [fed.national], "region": fed.regions, "office": fed.offices}
    for kind, codes in kinds.items():
        for k in ("cpu_pct", "rss_mb", "anon_mb", "pss_mb", "threads"):
            vals = [per[c][k] for c in codes]
            out[f"{kind}_{k}_median"] = round(statistics.median(vals), 2)
            out[f"{kind}_{k}_max"] = round(max(vals), 2)
    return out


def metric_sums(m, prefix="appeal_"):
    """{metric name: sum over its series} of the metrics with 'bytes' in the
    name, from appealctl metrics."""
    rc, out, _ = m.ctl_raw("metrics")
    sums = {}
    if rc != 0:
        return sums
    for line in out.splitlines():
        if line.startswith(prefix) and "bytes" in line.split("{")[0].split()[0]:
            name = line.split("{")[0].split()[0]
            try:
                sums[name] = sums.get(name, 0) + float(line.split()[-1])
            except ValueError:
                pass
    return sums


def metric_value(m, name):
    """The sum of a metric's series on member m (0 if absent)."""
    rc, out, _ = m.ctl_raw("metrics")
    total = 0.0
    for line in out.splitlines() if rc == 0 else []:
        if line.split("{")[0].split(" ")[0] == name:
            total += float(line.split()[-1])
    return total


def wire_figures(fed, heads, own):
    """Bytes through the cut offices' proxies (both ways, everything: records,
    requests, heads) per record moved over those links, and the nodes'
    own byte counters of the cut offices, summed."""
    total_bytes = total_records = 0
    split = {"peer": 0, "pub": 0}  # the pull connection, and the heads' subscription
    for o in fed.cut:
        for i, p in enumerate(fed.proxies[o]):
            st = p.status()
            n = int(st.get("bytes_up", 0)) + int(st.get("bytes_down", 0))
            total_bytes += n
            split["peer" if i % 2 == 0 else "pub"] += n
        # what the office received (every other origin in full: it was cut
        # from the start) and sent (its own log, which its region lacked)
        total_records += sum(s for c, (s, _) in heads.items() if c != o) + own.get(o, 0)
    counters = {}
    for o in fed.cut:
        for k, v in metric_sums(fed.members[o]).items():
            counters[k] = counters.get(k, 0) + v
    return {"cut_link_bytes": total_bytes, "cut_link_bytes_pull": split["peer"],
            "cut_link_bytes_heads": split["pub"], "cut_link_records": total_records,
            "wire_bytes_per_record": round(total_bytes / total_records, 1)
            if total_records else None, "cut_office_byte_counters": counters}


def check_identical(fed, heads):
    """Failures: nodes whose (seq, head hash) of some origin differ from the
    origin's own."""
    bad = []
    with ThreadPoolExecutor(POLL_WORKERS) as pool:
        views = dict(zip(fed.members, pool.map(origins_of, fed.members.values())))
    for c, v in views.items():
        wrong = [o for o, h in heads.items() if tuple(v.get(o, (0, ""))) != tuple(h)]
        if wrong:
            bad.append(f"{c} differs on {len(wrong)} origins, e.g. {wrong[:3]}")
    return bad


def check_verify(fed, sample=None):
    codes = list(fed.members)
    if sample and sample < len(codes):
        step = len(codes) / sample
        codes = sorted({codes[int(i * step)] for i in range(sample)} | {fed.national})
    bad = []

    def one(c):
        rc, out = fed.members[c].offline("verify")
        return c, rc, out
    with ThreadPoolExecutor(2) as pool:
        for c, rc, out in pool.map(one, codes):
            if rc != 0:
                bad.append(f"verify {c}: exit {rc}: {out.strip()[-200:]}")
    return len(codes), bad


def check_recount(fed, acked):
    """KZ's aggregates against a recount of its own records; acknowledged
    numbers against KZ's filed records. Returns (figures, failures)."""
    import datetime
    kz = fed.members[fed.national]
    recs = recount.records(fed.bin("appeal-node"), kz.dir)
    appeals = recount.fold(recs)
    today = (datetime.date.fromisoformat(kz.ctl("info")["today"]) -
             datetime.date(1970, 1, 1)).days
    bad = []
    for by in STATS_BY:
        want = recount.aggregate(appeals, by, today)
        got = recount.from_stats(kz.ctl("stats", "--by", ",".join(by)), by)
        if got != want:
            bad.append(f"stats --by {','.join(by)} on KZ differs from the recount")
    numbers = {r["number"] for r in recs if r["kind"] == "filed"}
    lost = [n for ns in acked.values() for n in ns if n not in numbers]
    if lost:
        bad.append(f"{len(lost)} acknowledged numbers missing on KZ, e.g. {lost[:3]}")
    return {"appeals_on_kz": len(appeals), "acknowledged": sum(map(len, acked.values())),
            "lost": len(lost)}, bad


def lag_figures(fed, watch, heads, acked_at, t_return):
    """The national node's lag per office: seconds from the moment an office's
    log could reach KZ (its last acknowledgement, or its link's return for a
    cut office) to KZ holding all of it (0.5 s polling)."""
    lags = {}
    for o in fed.offices:
        ready = max(acked_at[o], t_return) if o in fed.cut else acked_at[o]
        seen = watch.reached(o, heads[o][0])
        lags[o] = max(0.0, seen - ready) if seen is not None else None
    cut = [lags[o] for o in fed.cut if lags[o] is not None]
    rest = [lags[o] for o in fed.offices if o not in fed.cut and lags[o] is not None]
    out = {"per_office_s": {o: round(v, 1) for o, v in lags.items() if v is not None}}
    for name, vals in (("cut", cut), ("uncut", rest)):
        if vals:
            out[f"{name}_median_s"] = round(statistics.median(vals), 1)
            out[f"{name}_max_s"] = round(max(vals), 1)
    return out


def simulate(fed, per_office=5, hold_s=30, rate_kbit=64, outage_every_s=30, outage_s=5,
             idle_s=30, verify_sample=None, timeout=600, log=print, office_args=(),
             pull_share=None):
    """One run on an initialised (not started) Reach federation; see the
    module's text. The caller kills the processes (fed.kill_all)."""
    result = {"regions": len(fed.regions), "offices": len(fed.offices), "cut": len(fed.cut),
              "nodes": len(fed.members), "mesh_links": len(fed.mesh), "dial": fed.dial,
              "per_office": per_office, "rate_kbit": rate_kbit,
              "outage_every_s": outage_every_s, "outage_s": outage_s}
    failures = []
    features = proxy_features(fed)
    result["proxy_features"] = sorted(features)
    for o in fed.cut:
        fed.proxy_cmd(o, "cut")
    t = time.time()
    fed.start(office_args=office_args)
    result["office_args"] = list(office_args)
    result["start_s"] = round(time.time() - t, 1)
    say(log, f"{len(fed.members)} nodes up in {result['start_s']} s "
             f"({len(fed.proxies) and sum(map(len, fed.proxies.values()))} proxies); filing")
    watch = Watch(fed.members[fed.national])
    watch.start()
    t_file = time.time()
    acked, acked_at = file_everywhere(fed, per_office)
    result["filing_s"] = round(time.time() - t_file, 1)
    heads = own_heads(fed)
    own = {o: heads[o][0] for o in fed.members}
    uncut = [c for c in fed.members if c not in fed.cut]
    say(log, f"filed {sum(map(len, acked.values()))} appeals in {result['filing_s']} s; "
             f"the rest converging while {len(fed.cut)} offices are cut")
    t_hold = time.time()
    while not converged_part(fed, uncut, heads):
        if time.time() - t_hold > timeout:
            raise AssertionError("the uncut part did not converge")
        time.sleep(1)
    result["uncut_converged_s"] = round(time.time() - t_file, 1)
    time.sleep(max(0.0, hold_s - (time.time() - t_hold)))
    kz_view = origins_of(fed.members[fed.national])
    result["kz_cut_before_return"] = {o: kz_view.get(o, (0, ""))[0] for o in fed.cut}
    outages = return_links(fed, rate_kbit, outage_every_s, outage_s, features, pull_share)
    result["pull_share"] = pull_share
    t_return = time.time()
    say(log, f"links returned ({'rate %d kbit/s' % rate_kbit if 'rate' in features else 'no rate limit'}"
             f", outages {outage_s} s every {outage_every_s} s"
             f" {'by the proxy' if 'outages' in features else 'from the driver'})")
    try:
        done = wait_everywhere(fed, heads, t_return, timeout, log)
    finally:
        watch.stop()
        if outages:
            outages.stop()
            result["outages"] = outages.count
        elif "outages" in features:
            for o in fed.cut:
                fed.proxy_cmd(o, "flap", 0, 0)
    result["convergence_s"] = round(max(done.values()), 1)
    result["convergence_median_s"] = round(statistics.median(done.values()), 1)
    say(log, f"converged {result['convergence_s']} s after the last link returned")
    result["wire"] = wire_figures(fed, heads, own)
    result["national_lag"] = lag_figures(fed, watch, heads, acked_at, t_return)
    if idle_s:
        say(log, f"idle for {idle_s} s: CPU and memory of every node")
        result["idle"] = idle_figures(fed, idle_s)
    failures += check_identical(fed, own_heads(fed))
    n, bad = check_verify(fed, verify_sample)
    result["verified_nodes"] = n
    failures += bad
    figs, bad = check_recount(fed, acked)
    result.update(figs)
    result["acked"] = acked
    failures += bad
    result["failures"] = failures
    return result


def summary(r):
    """A few lines of text for a result of simulate."""
    w, lag = r["wire"], r["national_lag"]
    lines = [
        f"{r['nodes']} nodes: national KZ + {r['regions']} regions in a ring with chords "
        f"({r['mesh_links']} links), {r['offices']} offices each dialling its region; "
        f"{r['cut']} offices cut, then back at "
        f"{r['rate_kbit'] if 'rate' in r['proxy_features'] else 'unlimited'} kbit/s with "
        f"{r['outage_s']} s outages every {r['outage_every_s']} s",
        f"start {r['start_s']} s; filing {r['acknowledged']} appeals {r['filing_s']} s",
        f"convergence after the last link returned: {r['convergence_s']} s "
        f"(median node {r['convergence_median_s']} s)",
        f"wire: {w['cut_link_bytes']} bytes over the cut offices' links for "
        f"{w['cut_link_records']} records: {w['wire_bytes_per_record']} bytes/record "
        f"(pull connections {w['cut_link_bytes_pull']}, heads {w['cut_link_bytes_heads']})",
        f"national lag per office: cut median {lag.get('cut_median_s')} s max "
        f"{lag.get('cut_max_s')} s; uncut median {lag.get('uncut_median_s')} s max "
        f"{lag.get('uncut_max_s')} s",
    ]
    if "idle" in r:
        i = r["idle"]
        lines.append(
            f"idle over {i['seconds']} s: office CPU median {i['office_cpu_pct_median']} % "
            f"max {i['office_cpu_pct_max']} %, region {i['region_cpu_pct_median']} % "
            f"max {i['region_cpu_pct_max']} %, KZ {i['national_cpu_pct_max']} %; RSS office "
            f"{i['office_rss_mb_median']} MB (PSS {i['office_pss_mb_median']}, anon "
            f"{i['office_anon_mb_median']}), region {i['region_rss_mb_median']} MB, KZ "
            f"{i['national_rss_mb_max']} MB")
    lines.append(f"checks: verify on {r['verified_nodes']} nodes; recount; "
                 f"{r['lost']} acknowledged lost; "
                 + ("all passed" if not r["failures"] else "FAILED: " + "; ".join(r["failures"])))
    return lines
