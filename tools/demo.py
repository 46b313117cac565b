"""The demo behind tools/demo: a federation at work, start to finish."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fedlib  # noqa: E402
import json  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

BIN = os.path.join(fedlib.ROOT, "build", "bin")


def say(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def ctl(member, *args, check=True, key=None, quiet=False):
    """appealctl against `member`, signed with `key` (default: its administrator's)."""
    p = subprocess.run([os.path.join(BIN, "appealctl"), "--node", member.api, "--key",
                        key or member.admin_key, *args], capture_output=True, text=True)
    out = (p.stdout + p.stderr).rstrip()
    if out and not quiet:
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


def http(method, url, form=None):
    """(status, parsed JSON) of one request to a node's Open311 listener."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def start_listening(fed):
    """Starts every node with its dashboard (--http) and its public Open311
    listener (--open311), on two more free ports each."""
    base = fedlib.port_block(2 * len(fed.members))
    for i, m in enumerate(fed.members.values()):
        m.http_url = f"http://127.0.0.1:{base + 2 * i}/"
        m.open311_url = f"http://127.0.0.1:{base + 2 * i + 1}/open311/v2/"
        m.start("--http", f"127.0.0.1:{base + 2 * i}",
                "--open311", f"127.0.0.1:{base + 2 * i + 1}", wait=False)
    for m in fed.members.values():
        m.wait_ready()


def portal_files(almaty, names):
    """A citizen's portal, with the channel key Almaty's administrator gave
    it, files an appeal through Open311: the same rules and signing as
    appealctl file, the answer after the durable commit."""
    key = json.loads(ctl(almaty, "--json", "channel", "add", "--label",
                         "Citizens' portal (demo)", quiet=True).stdout)["api_key"]
    print(f"  channel key for the portal: {key[:8]}... (stored by the node only as a hash)")
    form = {"api_key": key, "service_code": "0005.0001", "attribute[type]": "complaint",
            "first_name": "Saule", "last_name": "Omarova", "phone": "+77017770011",
            "description": "No hot water in our building for two weeks",
            "address_string": "Almaty, Tole bi 45", "locale": "en"}
    print(f"  POST {almaty.open311_url}requests.json  (form: service_code, "
          f"attribute[type]=complaint, name, phone, description, address)")
    st, doc = http("POST", almaty.open311_url + "requests.json", form)
    if st != 200:
        raise SystemExit(f"Open311 filing refused: {st} {doc}")
    print(f"  {st}: service_request_id {doc[0]['service_request_id']}")
    print(f"  service_notice: {doc[0]['service_notice']}")
    print(f"  receipt: {len(doc[0]['receipt']) // 2} bytes, the signed record "
          f"(appealctl receipt verify checks it offline)")
    return doc[0]["service_request_id"]


def status_elsewhere(member, number, names):
    """The public status of `number` on another region's node, from its
    verified replica: no personal data, in the language asked for."""
    end = time.time() + 30
    while True:
        st, doc = http("GET", member.open311_url + f"requests/{number}.json?locale=en")
        if st == 200:
            break
        if time.time() > end:
            raise SystemExit(f"{number} did not reach {member.juris}: {st} {doc}")
        time.sleep(0.3)
    print(f"  GET {member.open311_url}requests/{number}.json")
    r = doc[0]
    for k in ("status", "status_notes", "service_name", "agency_responsible",
              "expected_datetime", "source", "description"):
        print(f"    {k:20} {r[k]!r}")
    _, kk = http("GET", member.open311_url + f"requests/{number}.json?locale=kk")
    _, ru = http("GET", member.open311_url + f"requests/{number}.json?locale=ru")
    print(f"    {'kk / ru':20} {kk[0]['service_name']} / {ru[0]['service_name']}")
    text = json.dumps(doc, ensure_ascii=False)
    for secret in ("Saule", "Omarova", "77017770011", "hot water", "Tole bi"):
        if secret in text:
            raise SystemExit(f"personal data in a public answer: {secret}")
    print("    (no name, phone, text or address: the public answer carries none)")


def main():
    keep = "--keep" in sys.argv
    root = tempfile.mkdtemp(prefix="appeal-demo-")
    codes = [j["code"] for j in fedlib.jurisdictions(5)]
    names = {j["code"]: j["name"] for j in fedlib.jurisdictions(5)}
    fed = fedlib.Federation(root, codes, BIN, heartbeat_ms=1000, tied=not keep)
    try:
        say(f"Start a federation of {len(codes)} nodes on loopback")
        fed.init()
        start_listening(fed)
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

        say("A citizen's portal files an appeal in Almaty through Open311 (HTTP, no appealctl)")
        a3 = portal_files(almaty, names)

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

        say(f"Anyone follows {a3} by its number on Astana's node (KZ-71): Open311 public status")
        status_elsewhere(astana, a3, names)

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
            say("Every node's dashboard and public Open311 listener")
            for code, m in fed.members.items():
                print(f"  {code:6} {names[code]:18} dashboard {m.http_url}")
                print(f"  {'':6} {'':18} Open311   {m.open311_url}  "
                      f"(discovery: {m.open311_url[:-3]}discovery.json)")
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
