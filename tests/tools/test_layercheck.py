"""The layer check (tools/layercheck): passes on the real tree, and fails on
a copy where one module includes a header of a layer above it, naming the
file, the line and both layers. Usage: test_layercheck.py SOURCE_ROOT."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "tools", "layercheck")


def run(root):
    return subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)


class LayerCheck(unittest.TestCase):
    def test_real_tree_passes(self):
        r = run(ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("every include points down", r.stdout)

    def copy(self):
        tmp = tempfile.mkdtemp(prefix="layercheck-")
        self.addCleanup(shutil.rmtree, tmp)
        for d in ("node", "cluster"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(tmp, d))
        return tmp

    def plant(self, tmp, path, header):
        """Adds `#include "header"` after the first line of `path`; its line number."""
        full = os.path.join(tmp, path)
        with open(full, encoding="utf-8") as f:
            lines = f.readlines()
        lines.insert(1, f'#include "{header}"\n')
        with open(full, "w", encoding="utf-8") as f:
            f.writelines(lines)
        return 2

    def test_store_including_the_service_fails(self):
        tmp = self.copy()
        self.assertEqual(run(tmp).returncode, 0)
        line = self.plant(tmp, "node/store/state.c", "node.h")
        r = run(tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"node/store/state.c:{line}: layer store includes node.h of layer service "
                      "(node/service/node.h)", r.stderr)

    def test_store_including_replication_fails(self):
        tmp = self.copy()
        line = self.plant(tmp, "node/store/writer.c", "repl.h")
        r = run(tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"node/store/writer.c:{line}: layer store includes repl.h of layer cluster",
                      r.stderr)

    def test_base_including_the_domain_fails(self):
        tmp = self.copy()
        line = self.plant(tmp, "node/base/tls.c", "keys.h")
        r = run(tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"node/base/tls.c:{line}: layer base includes keys.h of layer domain",
                      r.stderr)
        self.assertIn("base may use only base", r.stderr)

    def test_a_header_name_in_two_layers_fails(self):
        tmp = self.copy()
        shutil.copy(os.path.join(tmp, "node/store/query.h"), os.path.join(tmp, "cluster/query.h"))
        r = run(tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("header name also in", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
