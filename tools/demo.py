"""The demo behind tools/demo: a federation at work, start to finish."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fedlib  # noqa: E402

BIN = os.path.join(fedlib.ROOT, "build", "bin")


def say(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def ctl(member, *args, check=True, key=None):
    """appealctl against `member`, signed with `key` (default: its administrator's)."""
    p = subprocess.run([os.path.join(BIN, "appealctl"), "--node", member.api, "--key",
                        key or member.admin_key, *args], capture_output=True, text=True)
    out = (p.stdout + p.stderr).rstrip()
    if out:
        print(out)
    if check and p.returncode != 0:
        raise SystemExit(f"appealctl {' '.join(args)} failed")
    return p


def file(member, type_, category, subject, *extra, key=None):
    p = subprocess.run([os.path.join(BIN, "appealctl"), "--node", member.api, "--key",
                        key or member.admin_key, "--json", "file",
                        "--type", type_, "--category", category, "--subject", subject, *extra],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    import json
    r = json.loads(p.stdout)
    print(f"  {member.juris:6} {r['number']}  {type_:9}  deadline {r['deadline']}"
          f"{'  urgent' if r['urgent'] else ''}")
    return r["number"]


def main():
    keep = "--keep" in sys.argv
    root = tempfile.mkdtemp(prefix="appeal-demo-")
    codes = [j["code"] for j in fedlib.jurisdictions(5)]
    names = {j["code"]: j["name"] for j in fedlib.jurisdictions(5)}
    fed = fedlib.Federation(root, codes, BIN, heartbeat_ms=1000, tied=not keep)
    try:
        say(f"Start a federation of {len(codes)} nodes on loopback")
        fed.init().start()
        fed.save()
        for code, m in fed.members.items():
            print(f"  {code:6} {names[code]:18} api {m.api}  peers pull from {m.peer}")
        kz, astana, almaty, shymkent, abai = (fed.members[c] for c in codes)

        say("Officials get keys; each node's administrator grants them roles")
        keys = {}
        for who, member, role in (("registrar", almaty, "registrar"),
                                  ("official", almaty, "official"),
                                  ("national", kz, "national")):
            keys[who] = os.path.join(root, f"{who}.key")
            subprocess.run([os.path.join(BIN, "appealctl"), "keygen", "--out", keys[who]],
                           capture_output=True, check=True)
            print(f"  {member.juris:6} {role:9} ", end="")
            ctl(member, "grant", keys[who] + ".pub", "--role", role, "--label",
                f"{role} of {names[member.juris]}")

        say("Register appeals in different regions (each node signs its own records)")
        a1 = file(almaty, "statement", "0002.0001", "Recalculation of my pension",
                  "--applicant-name", "Aigerim Bekova", "--applicant-iin", "900101300126",
                  "--applicant-address", "Almaty, Abai avenue 150", key=keys["registrar"])
        a2 = file(almaty, "complaint", "0005.0002", "Heating tariff raised without notice",
                  "--applicant-name", "Timur Akhmetov", "--applicant-iin", "851231400567",
                  key=keys["registrar"])
        file(astana, "proposal", "0005.0003", "A park on the empty lot by the river",
             "--applicant-name", "Residents' initiative group", "--co-signers", "240")
        file(shymkent, "request", "0002.0003", "Places in school No. 12",
             "--applicant-name", "Dana Sarsen", "--applicant-iin", "010203500018")
        file(abai, "report", "0004.0003", "Bribe demanded at a land office", "--anonymous")
        file(abai, "statement", "0003.0002", "Road to the village washed out",
             "--applicant-name", "Yerlan Nurgaliyev")

        say("Work on them: the registrar may not answer; the official assigns, answers, closes")
        ctl(almaty, "answer", a1, "--outcome", "satisfied", "--text", "Done.",
            key=keys["registrar"], check=False)
        ctl(almaty, "assign", a2, "--to", "Department of energy and utilities",
            key=keys["official"])
        ctl(almaty, "answer", a1, "--outcome", "satisfied", "--text",
            "Your pension was recalculated from next month.", key=keys["official"])
        ctl(almaty, "close", a1, key=keys["official"])

        say(f"Forward {a2} from Almaty to Astana, the competent body")
        ctl(almaty, "forward", a2, "--to", "KZ-71", "--reason",
            "The tariff is set by a body in Astana")
        end = time.time() + 30
        while a2 not in ctl(astana, "list", "--incoming", check=False).stdout:
            if time.time() > end:
                raise SystemExit("the forward did not arrive")
            time.sleep(0.3)
        ctl(astana, "accept", a2)

        say("Wait until every node holds the same logs")
        views = fed.wait_converged(timeout=60)
        print("  every node holds, per origin: " +
              ", ".join(f"{k} {v}" for k, v in sorted(views.items())))

        say(f"The national office (KZ) looks up {a2}: where it is now, no personal data")
        ctl(kz, "show", a2, key=keys["national"])
        say(f"The new owner (Astana) opens it: personal data re-encrypted under its key")
        ctl(astana, "show", a2)

        say("Replication as the national office sees it")
        ctl(kz, "cluster", "status")

        say("Appeals per region, from the national office's replica")
        for code in codes[1:]:
            print(f"  -- {code} {names[code]}")
            ctl(kz, "list", "--owner", code)

        if keep:
            print(f"\nThe federation keeps running in {root}.")
            print(f"Stop it with: tools/federation down --dir {root}")
            return
        say("Stop the nodes and verify every copy of every log offline")
        rcs = fed.stop()
        for code, m in fed.members.items():
            rc, out = m.offline("verify")
            print(f"  {code:6} exit {rcs[code]}  {out.strip()}")
            if rc != 0:
                raise SystemExit(1)
    finally:
        if not keep:
            fed.kill_all()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
