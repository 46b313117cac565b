"""Transport encryption: a federation of real node processes over tls+tcp://
replicates and answers live queries; appealctl needs the federation's CA
and refuses a node whose certificate it does not trust; a node with a
certificate from another CA cannot join; a plain tcp:// client is turned
away cleanly; a tls+tcp:// address without the TLS files, and a libnng
without TLS, are refused with a clear message."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BIN, CTL, NODE, Node, fedlib, federation, free_port, identical_logs, wait_for

CODES = ["KZ", "KZ-71", "KZ-75"]


def file_on(m, n, prefix="Appeal"):
    return [m.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                  f"{prefix} {i} at {m.juris}", "--applicant-name", "Aigerim Bekova",
                  "--applicant-iin", "900101300126")["number"] for i in range(n)]


def ctl(url, *args, env_extra=None, key=None):
    """appealctl without the harness's defaults: (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPEAL_TLS", "APPEAL_KEY"))}
    env.update(env_extra or {})
    sign = ["--key", key] if key else []
    p = subprocess.run([CTL, "--node", url, "--timeout", "5000", *sign, *args],
                       capture_output=True, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def stops(fed, rcs):
    """Exit statuses with the end of each failing node's stderr (sanitizer reports)."""
    return {c: (rc, getattr(fed.members[c], "stderr", "")[-3000:]) for c, rc in rcs.items()
            if rc != 0}


def peer_status(m, juris):
    st = m.ctl("cluster", "status")
    return next(p for p in st["peers"] if p["jurisdiction"] == juris)


class TlsFederation(unittest.TestCase):
    """Three nodes, every address tls+tcp://, certificates from one CA."""

    @classmethod
    def setUpClass(cls):
        cls.fed = federation(CODES, tls=True)
        cls.fed.start()
        cls.other_ca = fedlib.tls_ca(os.path.join(cls.fed.root, "other-ca"), name="Not ours")

    @classmethod
    def tearDownClass(cls):
        rcs = cls.fed.stop()
        cls.fed.kill_all()
        shutil.rmtree(cls.fed.root, ignore_errors=True)
        assert all(rc == 0 for rc in rcs.values()), stops(cls.fed, rcs)

    def test_replicates_and_answers_live_queries(self):
        fed = self.fed
        with open(fed.cluster_file) as f:
            cluster = f.read()
        self.assertEqual(cluster.count("peer tls+tcp://127.0.0.1:"), 3)
        self.assertNotIn(" tcp://", cluster)
        numbers = {"KZ-71": file_on(fed.members["KZ-71"], 3, "Road"),
                   "KZ-75": file_on(fed.members["KZ-75"], 2, "Water")}
        fed.members["KZ-71"].ctl("answer", numbers["KZ-71"][0], "--outcome", "explained",
                                 "--text", "Explained")

        def converged():
            logs = identical_logs(fed)
            first = logs["KZ"]
            return all(v == first for v in logs.values()) and first
        wait_for(converged, 60, what="convergence over TLS")
        # Every appeal is on every node; personal data stays home.
        for code, nums in numbers.items():
            for m in fed.members.values():
                for n in nums:
                    self.assertEqual(m.ctl("show", n)["owner"], code)
        v = fed.members["KZ"].ctl("show", numbers["KZ-71"][0])
        self.assertEqual((v["status"], v["owner"]), ("answered", "KZ-71"))
        self.assertIsNone(v["personal"])
        self.assertEqual(fed.members["KZ-75"].ctl("show", numbers["KZ-75"][1])["personal"]["name"],
                         "Aigerim Bekova")
        # Live: every jurisdiction answers over its tls+tcp:// query address.
        live = fed.members["KZ"].ctl("stats", "--by", "region", "--live")
        self.assertEqual(live["mode"], "live")
        self.assertEqual({j: s["source"] for j, s in live["sources"].items()},
                         {c: "live" for c in CODES})
        self.assertEqual({g["region"]: g["count"] for g in live["groups"]},
                         {"KZ-71": 3, "KZ-75": 2})
        st = fed.members["KZ"].ctl("cluster", "status")
        for p in st["peers"]:
            self.assertTrue(p["url"].startswith("tls+tcp://"), p)
            self.assertTrue(p["reachable"], p)
            self.assertEqual((p["last_error"], p["refused_records"]), ("", 0), p)

    def test_appealctl_checks_the_node_certificate(self):
        m = self.fed.members["KZ-75"]
        # With the CA, from the option or the environment.
        rc, out, err = ctl(m.api, "--tls-ca", self.fed.ca_file, "--json", "info", key=m.admin_key)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["jurisdiction"], "KZ-75")
        rc, out, err = ctl(m.api, "--json", "info", key=m.admin_key,
                           env_extra={"APPEAL_TLS_CA": self.fed.ca_file})
        self.assertEqual(rc, 0, err)
        # Without it: a usage error that names the option.
        rc, out, err = ctl(m.api, "info")
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{m.api} is a tls+tcp:// address: give the federation's CA certificate "
                      "with --tls-ca FILE (or APPEAL_TLS_CA)", err)
        # Another CA: the handshake fails, and says why.
        rc, out, err = ctl(m.api, "--tls-ca", self.other_ca, "info")
        self.assertEqual(rc, 3, err)
        self.assertIn(f"cannot reach the node at {m.api}: TLS handshake failed: the server's "
                      f"certificate is not signed by the CA in {self.other_ca} or does not name "
                      "127.0.0.1", err)
        # The certificate names the jurisdiction and the host, nothing else.
        rc, out, err = ctl(m.api, "--tls-ca", self.fed.ca_file, "--tls-server-name", "KZ-75",
                           "--json", "info", key=m.admin_key)
        self.assertEqual(rc, 0, err)
        rc, out, err = ctl(m.api, "--tls-ca", self.fed.ca_file, "--tls-server-name", "KZ-71",
                           "info")
        self.assertEqual(rc, 3, err)
        self.assertIn("or does not name KZ-71", err)
        # A CA file that is not one.
        rc, out, err = ctl(m.api, "--tls-ca", os.path.join(m.dir, "node.conf"), "info")
        self.assertEqual(rc, 2, err)
        self.assertIn("is not PEM", err)

    def test_plain_tcp_client_is_turned_away_cleanly(self):
        m = self.fed.members["KZ-71"]
        plain = m.api.replace("tls+tcp://", "tcp://")
        rc, out, err = ctl(plain, "--json", "info", key=m.admin_key)
        self.assertEqual(rc, 3, err)
        self.assertEqual(json.loads(out)["error"]["message"],
                         f"cannot reach the node at {plain}: Connection shutdown "
                         "(does it serve tls+tcp:// there?)")
        # The node is unharmed.
        self.assertEqual(m.ctl("info")["jurisdiction"], "KZ-71")

    def test_peer_addresses_want_a_client_certificate(self):
        # appealctl has no certificate: the pull server (peer port) refuses
        # the handshake, where the API port accepts it.
        m = self.fed.members["KZ"]
        rc, out, err = ctl(m.peer, "--tls-ca", self.fed.ca_file, "info")
        self.assertEqual(rc, 3, err)
        self.assertIn(f"cannot reach the node at {m.peer}: the server closed the connection "
                      "during the TLS handshake", err)


class ForeignCertificate(unittest.TestCase):
    """KZ-75 is in the cluster file, but its certificate comes from another
    CA: its peers refuse the handshake both ways, nothing of it arrives, and
    `cluster status` says why."""

    def setUp(self):
        self.fed = federation(CODES, tls=True)
        rogue = self.fed.members["KZ-75"]
        other = os.path.join(self.fed.root, "other-ca")
        rogue.client_ca = fedlib.tls_ca(other, name="Not the federation's")
        fedlib.tls_node_cert(other, rogue.dir, "KZ-75")

    def tearDown(self):
        rcs = self.fed.stop()
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.assertTrue(all(rc == 0 for rc in rcs.values()), stops(self.fed, rcs))

    def test_node_with_a_foreign_certificate_cannot_join(self):
        fed = self.fed
        fed.start()
        kz, kz71, rogue = (fed.members[c] for c in CODES)
        rogue_numbers = file_on(rogue, 2, "Rogue")  # it works, on its own
        honest = file_on(kz71, 1, "Honest")[0]
        # The honest nodes replicate between themselves over TLS...
        wait_for(lambda: kz.ctl("show", honest)["owner"] == "KZ-71", 30,
                 what="KZ-71's appeal on KZ")
        # ...and name the TLS failure on the link to KZ-75.
        want = ("TLS handshake with KZ-75 (%s) failed: its certificate is not signed by our CA "
                "or does not name KZ-75, or it refused ours" % rogue.peer)
        for m in (kz, kz71):
            p = wait_for(lambda m=m: (lambda p: p["last_error"] == want and p)(
                peer_status(m, "KZ-75")), 30, what=f"the TLS error on {m.juris}'s link")
            self.assertFalse(p["reachable"], p)
            self.assertEqual(p["records_in"], 0, p)
            self.assertGreaterEqual(p["errors"], 1, p)
        # KZ-75 fails the same way towards each of its peers (its pullers
        # record the failure when their own attempt ends: wait for it).
        want_rogue = {"KZ": f"TLS handshake with KZ ({kz.peer})",
                      "KZ-71": f"TLS handshake with KZ-71 ({kz71.peer})"}

        def rogue_errors():
            return {p["jurisdiction"]: p["last_error"].split(" failed:")[0]
                    for p in rogue.ctl("cluster", "status")["peers"]}
        wait_for(lambda: rogue_errors() == want_rogue, 30, what="the TLS errors on KZ-75's links")
        self.assertEqual(rogue_errors(), want_rogue)
        # Nothing of KZ-75 arrived anywhere, not even its genesis.
        time.sleep(1)
        for m in (kz, kz71):
            held = {o["jurisdiction"]: o["local_seq"] for o in m.ctl("cluster", "status")["origins"]}
            self.assertEqual(held.get("KZ-75", 0), 0, held)
            with self.assertRaises(Exception) as cm:
                m.ctl("show", rogue_numbers[0])
            self.assertEqual(getattr(cm.exception, "code", None), "not_found")
        self.assertIn('event=pull_failed peer=KZ-75 reason="TLS handshake with KZ-75', kz.log())


class Misconfiguration(unittest.TestCase):
    """What a node and appealctl say when TLS cannot work."""

    def setUp(self):
        self.node = Node("KZ-75")
        self.ca_dir = os.path.join(self.node.root, "ca")
        fedlib.tls_ca(self.ca_dir)
        self.files = fedlib.tls_node_cert(self.ca_dir, self.node.dir, "KZ-75")
        self.tls_args = ["--tls-ca", self.files["ca"], "--tls-cert", self.files["cert"],
                         "--tls-key", self.files["key"]]

    def tearDown(self):
        self.node.cleanup()

    def run_node(self, *args, env_extra=None, timeout=30):
        """appeal-node run ARGS, expected to stop by itself: (status, stderr)."""
        env = dict(os.environ, **(env_extra or {}))
        p = subprocess.run([NODE, "run", "--data", self.node.dir, *args], capture_output=True,
                           text=True, env=env, timeout=timeout)
        return p.returncode, p.stderr

    def test_tls_address_without_files(self):
        api = f"tls+tcp://127.0.0.1:{free_port()}"
        rc, err = self.run_node("--api", api)
        self.assertEqual(rc, 1, err)
        self.assertEqual(err.strip(), f"appeal-node run: {api} (--api) is a tls+tcp:// address: "
                         "give the node its TLS files with --tls-ca FILE --tls-cert FILE "
                         "--tls-key FILE")
        # In the cluster file too: its entry's derived addresses are tls+tcp:// as well.
        peer = f"tls+tcp://127.0.0.1:{free_port()}"
        cluster = os.path.join(self.node.root, "cluster.conf")
        with open(cluster, "w") as f:
            f.write(self.node.entry + f"  peer {peer}\n")
        rc, err = self.run_node("--api", f"tcp://127.0.0.1:{free_port()}", "--cluster", cluster)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"{peer} (KZ-75) is a tls+tcp:// address: give the node its TLS files",
                      err)

    def test_tls_options_all_or_none(self):
        rc, err = self.run_node("--api", f"tcp://127.0.0.1:{free_port()}", "--tls-ca",
                                self.files["ca"])
        self.assertEqual(rc, 2, err)
        self.assertIn("TLS takes all of --tls-ca FILE, --tls-cert FILE and --tls-key FILE", err)

    def test_bad_tls_files_are_refused_at_start(self):
        api = f"tls+tcp://127.0.0.1:{free_port()}"
        os.chmod(self.files["key"], 0o644)
        rc, err = self.run_node("--api", api, *self.tls_args)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"the TLS key {self.files['key']} may be read by its group or others "
                      f"(mode 644): chmod 600 {self.files['key']}", err)
        os.chmod(self.files["key"], 0o600)
        # A certificate that does not go with the key.
        other = tempfile.mkdtemp(dir=self.node.root)
        stranger = fedlib.tls_node_cert(self.ca_dir, other, "KZ-71")
        rc, err = self.run_node("--api", api, "--tls-ca", self.files["ca"], "--tls-cert",
                                stranger["cert"], "--tls-key", self.files["key"])
        self.assertEqual(rc, 1, err)
        self.assertIn(f"the TLS certificate {stranger['cert']} does not go with the key "
                      f"{self.files['key']}", err)
        # A certificate from another CA than the one the node trusts.
        other_ca = os.path.join(self.node.root, "other-ca")
        fedlib.tls_ca(other_ca)
        foreign = fedlib.tls_node_cert(other_ca, tempfile.mkdtemp(dir=self.node.root), "KZ-75")
        rc, err = self.run_node("--api", api, "--tls-ca", self.files["ca"], "--tls-cert",
                                foreign["cert"], "--tls-key", foreign["key"])
        self.assertEqual(rc, 1, err)
        self.assertIn(f"the TLS certificate {foreign['cert']} is not signed by the CA in "
                      f"{self.files['ca']}", err)
        # In a federation, a certificate that names another jurisdiction.
        cluster = os.path.join(self.node.root, "cluster.conf")
        with open(cluster, "w") as f:
            f.write(self.node.entry + f"  peer tls+tcp://127.0.0.1:{free_port()}\n")
        rc, err = self.run_node("--api", api, "--cluster", cluster, "--tls-ca", self.files["ca"],
                                "--tls-cert", stranger["cert"], "--tls-key", stranger["key"])
        self.assertEqual(rc, 1, err)
        self.assertIn(f"the TLS certificate {stranger['cert']} does not name KZ-75: peers expect "
                      "this node's jurisdiction in it (subjectAltName DNS:KZ-75)", err)
        rc, err = self.run_node("--api", api, "--tls-ca", os.path.join(self.node.dir, "rules.conf"),
                                "--tls-cert", self.files["cert"], "--tls-key", self.files["key"])
        self.assertEqual(rc, 1, err)
        self.assertIn("rules.conf is not PEM", err)

    def test_single_node_serves_its_api_over_tls(self):
        port = free_port()
        api = f"tls+tcp://127.0.0.1:{port}"
        p = subprocess.Popen([NODE, "run", "--data", self.node.dir, "--api", api,
                              "--log-file", self.node.log_path, *self.tls_args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            key = self.node.admin_key
            out = wait_for(lambda: (lambda r: r[0] == 0 and r[1])(
                ctl(api, "--tls-ca", self.files["ca"], "--json", "info", key=key)), 20,
                what="the node over TLS")
            self.assertEqual(json.loads(out)["jurisdiction"], "KZ-75")
            rc, out, err = ctl(api, "--tls-ca", self.files["ca"], "--json", "file", "--type",
                               "statement", "--category", "0002.0001", "--subject", "Over TLS",
                               "--applicant-name", "Aigerim Bekova", key=key)
            self.assertEqual(rc, 0, err)
            self.assertTrue(json.loads(out)["number"].startswith("KZ-75-"))
        finally:
            p.terminate()
            self.assertEqual(p.wait(timeout=30), 0)
            p.stderr.close()

    def test_probe_says_when_nng_has_no_tls(self):
        shim = os.path.join(BIN, "libnotls.so")
        if not os.path.exists(shim):
            self.skipTest("libnotls.so not built")
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": shim,
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        api = f"tls+tcp://127.0.0.1:{free_port()}"
        want = ("this nng has no TLS (tls+tcp://): Not supported (engine \"none\"); install a "
                "libnng built with mbedTLS (Debian's libnng1 is) or use tcp://")
        rc, err = self.run_node("--api", api, *self.tls_args, env_extra=env)
        self.assertEqual(rc, 1, err)
        self.assertIn(want, err)
        rc, err = self.run_node("--api", api, env_extra=env)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"{api} (--api) is a tls+tcp:// address, but {want}", err)
        rc, out, err = ctl(api, "--tls-ca", self.files["ca"], "info", env_extra=env)
        self.assertEqual(rc, 2, err)
        self.assertIn(want, err)


if __name__ == "__main__":
    unittest.main()
