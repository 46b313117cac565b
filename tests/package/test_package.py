"""The Debian package on a real machine: built from this tree by
tools/package, checked by lintian, installed with dpkg -i, a node initialised
under /var/lib/appeal-node the way docs/operations.md says and run as the
appeal user exactly as the installed unit says, an appeal filed, the package
upgraded to a higher version built from the same tree, the appeal still
there, then the package removed and purged with the data kept.

It installs system-wide, so it runs only as root, alone (tools/check runs it
after the suite, never inside ctest), and only on a machine where the
package is not installed already (CI's throwaway machines). It cleans up
after itself: package purged, the test instance's files and, if it made
it, the appeal user removed.

systemd need not be PID 1: the unit's ExecStart runs under setpriv as its
User and Group, with its UMask and EnvironmentFile, and
`systemd-analyze verify` checks the installed unit.
"""

import glob
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import fedlib  # noqa: E402

OUT = os.path.join(SOURCE, "build", "deb")
UNIT = "/lib/systemd/system/appeal-node@.service"
INSTANCE = "KZ-75"
DATA = f"/var/lib/appeal-node/{INSTANCE}"
ENV_FILE = f"/etc/appeal-node/{INSTANCE}.env"
CLUSTER_FILE = f"/etc/appeal-node/{INSTANCE}.cluster"
ADR = os.path.join(SOURCE, "docs", "decisions", "0014-debian-package.md")
READY_S = 20  # a node answers `info` well within this after it starts


def run(*args, check=True, env=None):
    p = subprocess.run(list(args), capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def installed_version():
    p = run("dpkg-query", "-W", "-f=${Status} ${Version}", "appeal-node", check=False)
    if p.returncode != 0 or not p.stdout.startswith("install ok installed"):
        return None
    return p.stdout.split()[-1]


def unit_service(path):
    """The [Service] settings of a unit file: name -> list of values."""
    settings, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def environment_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;":
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip().strip('"')
    return env


def exec_start(settings, instance):
    """The unit's ExecStart as systemd runs it (systemd.service(5),
    "Command lines"): %i is the instance; a word that is ${VAR} is one
    argument, a word that is $VAR is split at whitespace, and ${VAR} inside
    a word is replaced."""
    (line,) = settings["ExecStart"]
    assert line[0] not in "@-:+!", f"ExecStart prefix not handled here: {line}"
    env = {}
    for f in settings.get("EnvironmentFile", []):
        env.update(environment_file(f.lstrip("-").replace("%i", instance)))
    argv = []
    for word in shlex.split(line.replace("%i", instance).replace("%%", "%")):
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            argv.append(env.get(whole.group(1), ""))
        elif split:
            argv += env.get(split.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.getuid() != 0:
            raise unittest.SkipTest("installs the package system-wide: run as root")
        if installed_version() is not None:
            raise AssertionError(
                "appeal-node is installed on this machine: the package test would replace it "
                "(run it on a throwaway machine, or remove the package first)")
        for path in (DATA, ENV_FILE, CLUSTER_FILE):
            if os.path.exists(path):
                raise AssertionError(f"{path} exists: the package test will not touch it")
        cls.user_existed = _user_exists("appeal")
        cls.proc = None
        base = cls.build({})
        cls.base_deb, cls.base_version = base
        with open(os.path.join(OUT, "lintian.log")) as f:
            cls.lintian = f.read()
        cls.new_deb, cls.new_version = cls.build(
            {"APPEAL_DEB_VERSION": cls.base_version + "+test1", "APPEAL_LINTIAN": "0"})

    @classmethod
    def build(cls, extra):
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2", **extra)
        p = run(os.path.join(SOURCE, "tools", "package"), env=env)
        deb = p.stdout.strip().splitlines()[-1]
        version = run("dpkg-deb", "-f", deb, "Version").stdout.strip()
        return deb, version

    @classmethod
    def tearDownClass(cls):
        cls.stop_node()
        run("dpkg", "--purge", "appeal-node", check=False)
        shutil.rmtree(DATA, ignore_errors=True)
        for path in (ENV_FILE, CLUSTER_FILE):
            if os.path.exists(path):
                os.unlink(path)
        for d in ("/etc/appeal-node", "/var/lib/appeal-node"):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        if not cls.user_existed and _user_exists("appeal"):
            run("deluser", "--quiet", "--system", "appeal", check=False)

    # -- the node, the way the unit runs it --

    @classmethod
    def start_node(cls):
        settings = unit_service(UNIT)
        argv = exec_start(settings, INSTANCE)
        (user,), (group,) = settings["User"], settings["Group"]
        umask = int(settings.get("UMask", ["0022"])[0], 8)
        cls.log = open(os.path.join(OUT, f"{INSTANCE}.log"), "a")
        cls.proc = subprocess.Popen(
            ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--", *argv],
            env={"PATH": "/usr/bin:/bin"}, cwd="/", umask=umask, stdin=subprocess.DEVNULL,
            stdout=cls.log, stderr=cls.log, preexec_fn=fedlib.die_with_parent)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if cls.proc.poll() is not None:
                raise AssertionError(f"the node exited ({cls.proc.returncode}): "
                                     f"{open(cls.log.name).read()[-2000:]}")
            if cls.ctl("info", check=False).returncode == 0:
                return argv
            time.sleep(0.1)
        raise AssertionError(f"the node did not answer within {READY_S} s")

    @classmethod
    def stop_node(cls):
        """SIGTERM, as `systemctl stop` sends: the exit status."""
        if cls.proc is None:
            return None
        cls.proc.send_signal(signal.SIGTERM)
        try:
            rc = cls.proc.wait(timeout=60)  # the unit's TimeoutStopSec
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
            rc = "hung"
        cls.proc = None
        cls.log.close()
        return rc

    @classmethod
    def ctl(cls, *args, check=True):
        api = environment_file(ENV_FILE)["APPEAL_API"]
        return run("/usr/bin/appealctl", "--node", api, "--key", f"{DATA}/admin.key", "--json",
                   *args, check=check)

    # -- the test --

    def test_install_run_upgrade_remove(self):
        self.check_lintian()
        self.install(self.base_deb, self.base_version)
        self.check_installed_files()
        self.initialise()
        argv = self.start_node()
        self.assertEqual(argv[:2], ["/usr/bin/appeal-node", "run"])
        number = json.loads(self.ctl(
            "file", "--type", "statement", "--category", "0002.0001", "--subject",
            "Recalculation of my pension", "--applicant-name", "Aigerim Bekova",
            "--applicant-iin", "900101300126").stdout)["number"]
        self.assertRegex(number, rf"^{INSTANCE}-\d{{4}}-\d{{6}}$")

        # The upgrade, as with systemd: the old node runs while dpkg replaces
        # the files, then the unit restarts it (SIGTERM, start).
        self.install(self.new_deb, self.new_version)
        self.assertEqual(self.stop_node(), 0)
        self.start_node()
        shown = json.loads(self.ctl("show", number).stdout)
        self.assertEqual(shown["number"], number)
        self.assertEqual(shown["personal"]["subject"], "Recalculation of my pension")
        self.assertEqual(shown["personal"]["name"], "Aigerim Bekova")
        self.assertEqual(self.stop_node(), 0)

        # Remove keeps the data, and so does purge (ADR 0014).
        run("dpkg", "--remove", "appeal-node")
        self.assertFalse(os.path.exists("/usr/bin/appeal-node"))
        self.assertFalse(os.path.exists(UNIT))
        self.check_data_kept()
        self.assertTrue(os.path.exists(ENV_FILE))
        p = run("dpkg", "--purge", "appeal-node")
        self.check_data_kept()
        self.assertIn("kept /var/lib/appeal-node", p.stderr)
        self.assertTrue(os.path.exists(CLUSTER_FILE))
        self.assertTrue(_user_exists("appeal"))

    def check_lintian(self):
        self.assertNotRegex(self.lintian, r"(?m)^E: ", self.lintian)
        # Every warning is explained in the ADR.
        with open(ADR) as f:
            adr = f.read()
        for tag in re.findall(r"(?m)^W: appeal-node[^:]*: (\S+)", self.lintian):
            self.assertIn(f"`{tag}`", adr, f"lintian warning {tag} is not explained in {ADR}")

    def install(self, deb, version):
        run("dpkg", "-i", deb)
        self.assertEqual(installed_version(), version)
        p = run("/usr/bin/appeal-node", "--version")
        self.assertRegex(p.stdout, r"^appeal-node \d+\.\d+\.\d+\n$")
        self.assertTrue(version.startswith(p.stdout.split()[1]), (version, p.stdout))
        run("systemd-analyze", "verify", UNIT)
        run("systemd-analyze", "verify", f"appeal-node@{INSTANCE}.service")

    def check_installed_files(self):
        user = pwd.getpwnam("appeal")
        self.assertLess(user.pw_uid, 1000)  # a system user
        self.assertIn(user.pw_shell, ("/usr/sbin/nologin", "/bin/false"))
        st = os.stat("/var/lib/appeal-node")
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (user.pw_uid, 0o750))
        settings = unit_service(UNIT)
        self.assertEqual(settings["User"], ["appeal"])
        self.assertEqual(settings["ReadWritePaths"], ["/var/lib/appeal-node/%i"])
        self.assertIn("--data /var/lib/appeal-node/%i ", settings["ExecStart"][0])
        self.assertIn("--cluster /etc/appeal-node/%i.cluster ", settings["ExecStart"][0])
        self.assertEqual(settings["EnvironmentFile"], ["/etc/appeal-node/%i.env"])
        # The manual pages carry the programs' own --help.
        for page, prog in (("man8/appeal-node.8.gz", "appeal-node"),
                           ("man1/appealctl.1.gz", "appealctl")):
            text = run("man", "-P", "cat", "-l", f"/usr/share/man/{page}",
                       env=dict(os.environ, MANWIDTH="200")).stdout
            for line in run(f"/usr/bin/{prog}", "--help").stdout.splitlines()[:5]:
                self.assertIn(line.strip(), text)
        # Bash completion from the same --help.
        p = run("bash", "-c", "source /usr/share/bash-completion/completions/appealctl; "
                "COMP_WORDS=(appealctl fi); COMP_CWORD=1; _appeal_complete; "
                "echo ${COMPREPLY[*]}")
        self.assertEqual(p.stdout.split(), ["file", "find"])

    def initialise(self):
        """docs/operations.md, "Installing a node"."""
        ports = fedlib.port_block(4)
        p = run("runuser", "-u", "appeal", "--", "appeal-node", "init", "--data", DATA,
                "--jurisdiction", INSTANCE, "--peer", f"tcp://127.0.0.1:{ports + 1}")
        with open(CLUSTER_FILE, "w") as f:
            f.write(p.stdout)
        with open(ENV_FILE, "w") as f:
            f.write(f"APPEAL_API=tcp://127.0.0.1:{ports}\nAPPEAL_HTTP=\nAPPEAL_NODE_OPTS=\n")
        st = os.stat(DATA)
        self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777), ("appeal", 0o700))

    def check_data_kept(self):
        for name in ("node.conf", "sign.key", "data.key", "admin.key", "db"):
            self.assertTrue(os.path.exists(os.path.join(DATA, name)), name)
        self.assertTrue(glob.glob(os.path.join(DATA, "db", "*.mdb")))


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


if __name__ == "__main__":
    unittest.main()
