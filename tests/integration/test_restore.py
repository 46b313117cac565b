"""Restore on a real node: a restore stopped at any step (as by a kill) is
finished by the next `restore`, and nothing opens the half-moved database
meanwhile; a node with no peers is restored with --standalone and starts at
once, while a plain restore keeps it from signing without --cluster."""

import os
import subprocess
import unittest

from harness import NODE, Node, free_port

# The steps cmd_restore can be stopped at (APPEAL_TEST_RESTORE_STOP_AT), in order.
STEPS = ["copied", "checked", "marker", "aside", "swapped", "cleaned"]


class Restore(unittest.TestCase):
    def setUp(self):
        self.node = Node("KZ-75")
        self.node.start()
        self.first = [self.node.file(subject=f"Before the backup {i}")["number"]
                      for i in range(3)]
        self.assertEqual(self.node.stop(), 0)
        self.backup = os.path.join(self.node.root, "KZ-75.backup")
        rc, out = self.node.offline("backup", "--to", self.backup)
        self.assertEqual(rc, 0, out)
        rc, self.backup_log = self.node.offline("log")
        self.assertEqual(rc, 0, self.backup_log)
        self.node.start()
        self.later = [self.node.file(subject=f"After the backup {i}")["number"]
                      for i in range(2)]
        self.assertEqual(self.node.stop(), 0)
        rc, self.current_log = self.node.offline("log")
        self.assertEqual(rc, 0)
        self.assertNotEqual(self.current_log, self.backup_log)

    def tearDown(self):
        self.node.cleanup()

    def restore(self, *extra, stop_at=None):
        env = dict(os.environ)
        env.pop("APPEAL_TEST_RESTORE_STOP_AT", None)
        if stop_at:
            env["APPEAL_TEST_RESTORE_STOP_AT"] = stop_at
        p = subprocess.run([NODE, "restore", "--data", self.node.dir, *extra],
                           capture_output=True, text=True, env=env)
        return p.returncode, p.stdout + p.stderr

    def run_alone(self):
        """`run` without --cluster: its exit status and stderr if it stops,
        or None once it serves (then it is stopped)."""
        port = free_port()
        p = subprocess.Popen([NODE, "run", "--data", self.node.dir, "--api",
                              f"tcp://127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            rc = p.wait(timeout=5)
            err = p.stderr.read()
            p.stderr.close()
            return rc, err
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(timeout=30)
            p.stderr.close()
            return None, ""

    def assert_backup_in_place(self, what):
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 0, f"{what}: {out}")
        rc, out = self.node.offline("log")
        self.assertEqual(rc, 0, what)
        self.assertEqual(out, self.backup_log, what)
        self.assertFalse(os.path.exists(os.path.join(self.node.dir, "restore-check")), what)
        self.assertTrue(os.path.exists(os.path.join(self.node.dir, "recover")), what)

    def test_a_restore_stopped_at_any_step_is_finished_by_the_next(self):
        db = os.path.join(self.node.dir, "db")
        old = os.path.join(self.node.dir, "db.before-restore")
        for step in STEPS:
            with self.subTest(step=step):
                rc, out = self.restore("--from", self.backup, stop_at=step)
                self.assertEqual(rc, 99, f"{step}: {out}")  # stopped there, like a kill
                if step == "copied":
                    # Not yet decided: the node is untouched and still opens.
                    rc, out = self.node.offline("log")
                    self.assertEqual((rc, out), (0, self.current_log), step)
                elif step != "cleaned":
                    # Decided: nothing opens the half-moved database meanwhile.
                    for command in ("verify", "log"):
                        rc, out = self.node.offline(command)
                        self.assertEqual(rc, 1, f"{step} {command}: {out}")
                        self.assertIn("a restore of", out)
                        self.assertIn(f"appeal-node restore --data {self.node.dir} to finish",
                                      out)
                    rc, err = self.run_alone()
                    self.assertEqual(rc, 1, step)
                    self.assertIn("was interrupted", err)
                if step == "aside":
                    self.assertFalse(os.path.exists(db))  # the state the issue found
                if step != "cleaned":  # stopped after the last step: already done
                    rc, out = self.restore("--from", self.backup)
                    self.assertEqual(rc, 0, f"{step}: {out}")
                    self.assertIn("ok: restored 5 records" if step == "copied"  # nothing pending
                                  else "ok: finished an interrupted restore of", out)
                self.assert_backup_in_place(step)
                # Back to the state before the restore, for the next step.
                rc, out = self.node.offline("restore", "--from", self.backup)
                self.assertNotEqual(rc, 0)
                self.assertIn("is in the way", out)  # a finished restore is not redone
                subprocess.run(["rm", "-rf", db], check=True)
                os.rename(old, db)
                os.unlink(os.path.join(self.node.dir, "recover"))
                rc, out = self.node.offline("log")
                self.assertEqual((rc, out), (0, self.current_log), step)

    def test_finishing_names_the_other_file(self):
        rc, out = self.restore("--from", self.backup, stop_at="aside")
        self.assertEqual(rc, 99, out)
        other = os.path.join(self.node.root, "other.backup")
        os.link(self.backup, other)
        rc, out = self.restore("--from", other)
        self.assertEqual(rc, 1, out)
        self.assertIn("ok: finished an interrupted restore of", out)
        self.assertIn("move", out)
        self.assert_backup_in_place("finished, then refused the other file")
        rc, out = self.restore()  # nothing pending, no --from
        self.assertEqual(rc, 2, out)
        self.assertIn("--from FILE is required", out)

    def test_a_plain_restore_keeps_a_node_without_peers_from_signing(self):
        rc, out = self.restore("--from", self.backup)
        self.assertEqual(rc, 0, out)
        self.assertIn("--standalone", out)
        rc, err = self.run_alone()
        self.assertEqual(rc, 1)
        self.assertIn("start it with --cluster FILE", err)
        self.assertIn(f"appeal-node restore --data {self.node.dir} --standalone", err)
        self.assertIn("a fork if a peer held newer records", err)
        rc, out = self.node.offline("log")
        self.assertEqual(out, self.backup_log)  # nothing was signed
        # The administrator states there are no peers: it starts at once.
        rc, out = self.restore("--standalone")
        self.assertEqual(rc, 0, out)
        self.assertIn("standalone", out)
        self.assertFalse(os.path.exists(os.path.join(self.node.dir, "recover")))
        self.node.start()
        for n in self.first:
            self.assertEqual(self.node.ctl("show", n)["number"], n)
        self.assertEqual(self.node.info()["appeals"], 3)
        new = self.node.file(subject="After the restore")["number"]
        self.assertEqual(int(new[-6:]), int(self.first[-1][-6:]) + 1)
        self.assertEqual(self.node.stop(), 0)
        rc, out = self.node.offline("verify")
        self.assertEqual(rc, 0, out)

    def test_restore_standalone_starts_at_once(self):
        rc, out = self.restore("--from", self.backup, "--standalone")
        self.assertEqual(rc, 0, out)
        self.assertIn("signs at once", out)
        self.assertFalse(os.path.exists(os.path.join(self.node.dir, "recover")))
        self.node.start()
        self.assertEqual(self.node.info()["appeals"], 3)
        self.assertEqual(self.node.stop(), 0)
        # Stopped at the swap, it stays standalone when finished.
        subprocess.run(["rm", "-rf", os.path.join(self.node.dir, "db.before-restore")],
                       check=True)
        rc, out = self.restore("--from", self.backup, "--standalone", stop_at="swapped")
        self.assertEqual(rc, 99, out)
        rc, out = self.restore()
        self.assertEqual(rc, 0, out)
        self.assertIn("finished an interrupted restore", out)
        self.assertFalse(os.path.exists(os.path.join(self.node.dir, "recover")))
        rc, err = self.run_alone()
        self.assertIsNone(rc, err)  # it serves

    def test_standalone_alone_on_a_node_not_restored_is_refused(self):
        rc, out = self.restore("--standalone")
        self.assertEqual(rc, 2, out)
        self.assertIn("--from FILE is required", out)


if __name__ == "__main__":
    unittest.main()
