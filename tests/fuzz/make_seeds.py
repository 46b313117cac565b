#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/.

Usage: make_seeds.py [--check]

The corpus is this script's output, committed: change the script, run it,
commit both. With --check it writes nothing and exits 1 if the committed
files differ from what it would write (a CI check).

Protobuf messages are encoded by hand from proto/*.proto (field numbers
below), so the seeds need nothing but Python 3. Records are signed with
Ed25519 (RFC 8032 reference code below) by the key of seed FUZZ_KEY_SEED,
the same fixed key as in fuzz_record.c; it is also the origin key of node
KZ-75 in fuzz_peer.c, whose cluster has a second node, KZ-11 (KZ11_SEED),
and gives KZ-75 a successor key (NEXT_SEED). Records name as their actor
the public key of an official (ACTOR_SEED), who signs the requests; the
administrator's key (ADMIN_SEED) signs grants and revocations. Valid file
texts are the defaults compiled into node/domain/ruleset.c and node/domain/cal.c, read
from those sources, plus edge cases and malformed texts.
"""
import hashlib
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FUZZ_KEY_SEED = bytes([0x42]) * 32  # KZ-75's origin key (fuzz_record.c, fuzz_peer.c)
KZ11_SEED = bytes([0x43]) * 32  # KZ-11's origin key (fuzz_peer.c)
NEXT_SEED = bytes([0x44]) * 32  # KZ-75's successor key (fuzz_peer.c)
ACTOR_SEED = bytes([0x41]) * 32  # an official's key: records' actor, requests' signer
ADMIN_SEED = bytes([0x40]) * 32  # the node's administrator: grants and revokes keys

# ---- Ed25519 (RFC 8032, section 6: reference implementation) ----

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % P
    y = (a[1] + a[0]) * (b[1] + b[0]) % P
    z = 2 * a[3] * b[3] * D % P
    t = 2 * a[2] * b[2] % P
    e, f, g, h = y - x, t - z, t + z, y + x
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _compress(pt):
    zi = pow(pt[2], P - 2, P)
    x, y = pt[0] * zi % P, pt[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _expand(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def ed25519_public(seed):
    return _compress(_mul(_expand(seed)[0], G))


def ed25519_sign(seed, msg):
    a, prefix = _expand(seed)
    pk = _compress(_mul(a, G))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % Q
    rs = _compress(_mul(r, G))
    h = int.from_bytes(hashlib.sha512(rs + pk + msg).digest(), "little") % Q
    return rs + ((r + h * a) % Q).to_bytes(32, "little")


PK = ed25519_public(FUZZ_KEY_SEED)
KZ11_PK = ed25519_public(KZ11_SEED)
NEXT_PK = ed25519_public(NEXT_SEED)
ACTOR = ed25519_public(ACTOR_SEED)  # Body.actor: an Ed25519 public key (32 bytes)
ADMIN = ed25519_public(ADMIN_SEED)

# ---- protobuf wire format ----


def varint(v):
    v &= (1 << 64) - 1  # negative int32/int64 are ten bytes, as protobuf-c writes them
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(num, wire):
    return varint(num << 3 | wire)


def msg(*fields):
    """fields: (number, value); int -> varint, bytes/str -> length-delimited,
    None skipped. Lists give repeated fields."""
    out = bytearray()
    for num, val in fields:
        for v in val if isinstance(val, list) else [val]:
            if v is None:
                continue
            if isinstance(v, bool) or isinstance(v, int):
                out += key(num, 0) + varint(int(v))
            else:
                b = v.encode() if isinstance(v, str) else bytes(v)
                out += key(num, 2) + varint(len(b)) + b
    return bytes(out)


def blake2b256(b):
    return hashlib.blake2b(b, digest_size=32).digest()


# ---- records (proto/record.proto) ----

NUMBER = "KZ-75-2026-000001"
T0 = 1795000000000  # ms, 2026-11-18
DAY = 20784  # 2026-11-27
BOX = bytes(range(32))  # KZ-75's box key (fuzz_peer.c: its cluster entry)


def event(num, *fields):
    return (num, msg(*fields))


def record_events():
    """(name, Body event field) for every event kind."""
    sealed = bytes(range(64))
    return [
        ("genesis", event(10, (1, "KZ-75"), (2, BOX))),
        ("key-granted", event(22, (1, ACTOR), (2, "registrar"), (3, "KZ-75"),
                              (4, "Reception desk"))),
        ("filed", event(11, (1, NUMBER), (2, 0), (3, 1), (4, "0002.0001"), (5, "KZ-75"),
                        (6, T0), (7, DAY + 21), (9, 0), (12, ""), (13, sealed),
                        (14, bytes(16)), (15, bytes(8)), (17, DAY))),
        ("assigned", event(12, (1, NUMBER), (2, 1), (3, "Department of health"))),
        ("extended", event(13, (1, NUMBER), (2, 2), (3, DAY + 40),
                           (4, "Needs an inspection on site"))),  # one line (issue 10 K)
        ("forwarded", event(14, (1, NUMBER), (2, 3), (3, "KZ-11"), (4, "Outside competence"),
                            (5, sealed), (6, 1))),
        ("accepted", event(15, (1, NUMBER), (2, 4), (3, DAY + 30), (4, sealed),
                           (5, bytes(16)), (6, bytes(8)), (7, DAY + 5))),
        ("returned", event(16, (1, NUMBER), (2, 5), (3, "Not ours either"))),
        ("answered", event(17, (1, NUMBER), (2, 6), (3, 2), (4, sealed), (5, DAY + 9),
                           (6, bytes(8)))),
        ("closed", event(18, (1, NUMBER), (2, 7), (3, DAY + 10))),
        ("reopened", event(19, (1, NUMBER), (2, 8), (3, "Complaint against the answer"),
                           (4, DAY + 31), (5, DAY + 11))),
        ("withdrawn", event(20, (1, NUMBER), (2, 9), (3, "Решено / шешілді"))),
        ("heartbeat", event(21, (1, 12))),
        ("key-revoked", event(23, (1, ACTOR), (2, "Left the post"))),
        ("key-rotated", event(24, (1, blake2b256(b"next")), (2, 16), (3, BOX))),
    ]


def body(seq, prev, ev, actor=ACTOR):
    return msg((1, PK), (2, seq), (3, prev), (4, T0 + seq * 1000),
               (5, actor if seq > 1 else None), ev)


def envelope(body_bytes, sig=None):
    return msg((1, body_bytes), (2, sig if sig is not None else ed25519_sign(FUZZ_KEY_SEED,
                                                                             body_bytes)))


def records():
    """A valid chain of one origin, each record linked to the one before."""
    out, prev = [], bytes(32)
    for seq, (name, ev) in enumerate(record_events(), start=1):
        env = envelope(body(seq, prev, ev))
        out.append((f"{seq:02d}-{name}", env))
        prev = blake2b256(env)
    return out


def record_seeds():
    good = records()
    seeds = {f"valid-{n}": e for n, e in good}
    filed = good[2][1]
    b = body(3, bytes(32), record_events()[2][1])
    seeds["bad-truncated"] = filed[: len(filed) // 2]
    seeds["bad-sig-63-bytes"] = envelope(b, bytes(63))
    seeds["bad-sig-wrong"] = envelope(b, bytes(64))
    seeds["bad-seq-0"] = envelope(body(0, bytes(32), record_events()[12][1]))
    seeds["bad-number"] = envelope(body(4, bytes(32), event(18, (1, "KZ-75-26-1"), (2, 1))))
    seeds["bad-no-event"] = envelope(msg((1, PK), (2, 5), (3, bytes(32))))
    seeds["bad-body-group"] = envelope(b"\x0b\x0c")
    # Deceptive text (issue 10 K): every record text field is one line, with
    # no C1 or bidirectional control.
    for name, ev in [("assignee-bidi-override", event(12, (1, NUMBER), (2, 1), (3, "Dept\u202e"))),
                     ("assignee-c1", event(12, (1, NUMBER), (2, 1), (3, "Dept\u009b2J"))),
                     ("reason-cr", event(20, (1, NUMBER), (2, 9), (3, "Solved\rby phone"))),
                     ("reason-crlf", event(23, (1, ACTOR), (2, "Left\r\nthe post"))),
                     ("label-line-separator", event(22, (1, ACTOR), (2, "registrar"),
                                                    (4, "Desk\u2028one")))]:
        seeds[f"bad-{name}"] = envelope(body(4, bytes(32), ev))
    return seeds


# ---- requests (proto/api.proto) ----


def iin(prefix11):
    """Appends the check digit iin_check() expects (first weights only)."""
    d = [int(c) for c in prefix11]
    check = sum((i + 1) * d[i] for i in range(11)) % 11
    assert check != 10, prefix11
    return prefix11 + str(check)


def request(op_num, op, version=1, node=None):
    """A Request; `node` (field 4): the jurisdiction it is bound to, which
    signed requests carry (appealctl asks the node with `hello` first)."""
    return msg((1, version), (2, T0), (3, bytes(range(16))), (4, node), (op_num, op))


def client(req, signed=False, seed=ACTOR_SEED):
    """A ClientRequest: `req` signed by the key of `seed` (node/service/auth.c:
    Ed25519 over the exact Request bytes), or unsigned."""
    if signed:
        return msg((1, req), (2, ed25519_public(seed)), (3, ed25519_sign(seed, req)))
    return msg((1, req))


def request_seeds():
    person = iin("90010130001")
    file_op = msg((1, 1), (2, "0002.0002"), (3, "Broken lift"), (4, "The lift in block 5\nis broken."),
                  (5, "Aigerim S."), (6, person), (7, "Almaty, Abay 1"), (8, "+7 700 000 00 00"))
    seeds = {
        "file-unsigned": client(request(10, file_op)),
        "file-anonymous-report": client(request(10, msg((1, 5), (2, "0004.0003"), (3, "Bribe"),
                                                        (4, "At the gate"), (9, 1)))),
        "file-collective-complaint": client(request(10, msg(
            (1, 4), (2, "0003.0001"), (3, "Land"), (4, "Text"), (5, "N"), (6, person),
            (10, 250), (11, "KZ-75-2025-000007"), (12, DAY - 100), (13, "Was abroad")))),
        "show": client(request(11, msg((1, NUMBER)))),
        "list": client(request(12, msg((1, 1), (2, 1), (3, 50), (4, NUMBER), (5, "KZ-75")))),
        "list-default": client(request(12, b"")),
        "info": client(request(14, b"")),
        "act-assign-signed": client(request(13, msg((1, NUMBER), (2, 1), (3, "Dept"))), True),
        "act-extend-signed": client(request(13, msg((1, NUMBER), (2, 2), (4, DAY + 40),
                                                    (5, "Inspection"))), True),
        "act-answer-signed": client(request(13, msg((1, NUMBER), (2, 3), (6, 1),
                                                    (7, "Repaired."))), True),
        "act-forward-signed": client(request(13, msg((1, NUMBER), (2, 7), (8, "KZ-11"),
                                                     (5, "Competence"))), True),
        "act-close-signed": client(request(13, msg((1, NUMBER), (2, 4))), True),
        "cluster-status-signed": client(request(15, b""), True),
        "metrics-signed": client(request(16, b""), True),
        "query-signed": client(request(17, msg(
            (1, msg((1, ["KZ-75", "KZ-11"]), (2, "KZ-75"), (3, [1, 4]), (4, "0002"), (5, [0, 2]),
                    (6, DAY - 30), (7, DAY), (8, 1))),
            (2, ["region", "status"]), (3, 1), (4, 2000), (5, 100))), True),
        "overdue-signed": client(request(18, msg((1, ["KZ-75"]), (2, 50))), True),
        "grant-signed": client(request(19, msg((1, ACTOR), (2, "registrar"), (3, "KZ-75"),
                                               (4, "Registrar, reception office 1"))),
                               True, ADMIN_SEED),
        "grant-national-signed": client(request(19, msg((1, ACTOR), (2, "national"), (3, "KZ"))),
                                        True, ADMIN_SEED),
        "revoke-signed": client(request(20, msg((1, ACTOR), (2, "Left the post"))), True,
                                ADMIN_SEED),
        "grants-mine-signed": client(request(21, msg((1, 1))), True),
        "grants-all-signed": client(request(21, b""), True, ADMIN_SEED),
        "sig-63-bytes": msg((1, request(14, b"")), (2, ACTOR), (3, bytes(63))),
        "bad-version-2": client(request(14, b"", version=2)),
        "bad-no-op": client(msg((1, 1), (2, T0))),
        "bad-request-garbage": client(b"\xff\xff\xff"),
        "bad-truncated": client(request(10, file_op))[:40],
        "bad-length-past-end": b"\x0a\xff\xff\x03\x08\x01",
        "two-ops-last-wins": client(request(11, msg((1, NUMBER))) + msg((14, b""))),
        # hello (op 22): unsigned, answered to anyone; and requests bound to
        # a node (Request.node, field 4), as appealctl signs them.
        "hello": client(request(22, b"")),
        "hello-signed-for-node": client(request(22, b"", node="KZ-75"), True),
        "hello-unknown-field": client(request(22, msg((1, 7), (2, "x")))),
        "file-signed-for-node": client(request(10, file_op, node="KZ-75"), True),
        "act-assign-signed-for-node": client(request(13, msg((1, NUMBER), (2, 1), (3, "Dept")),
                                                     node="KZ-75"), True),
        "grant-signed-for-national-node": client(request(19, msg((1, ACTOR), (2, "national"),
                                                                 (3, "KZ")), node="KZ"),
                                                 True, ADMIN_SEED),
        "info-for-other-node": client(request(14, b"", node="KZ-11"), True),
        "node-malformed": client(request(14, b"", node="kz-75\n"), True),
        "node-long": client(request(14, b"", node="KZ-" + "7" * 200), True),
        "bad-node-varint": client(msg((1, 1), (2, T0), (3, bytes(range(16))), (4, 75),
                                      (14, b""))),
        "bad-node-twice": client(msg((1, 1), (2, T0), (3, bytes(range(16))), (4, "KZ-75"),
                                     (4, "KZ-11"), (14, b""))),
        "bad-node-nul": client(request(14, b"", node="KZ-75\0KZ-11"), True),
    }
    return seeds


# ---- messages for fuzz_pb_guard: first byte picks descriptor, depth, limit ----

DESC = {"envelope": 0, "body": 1, "client_request": 2, "request": 3, "response": 4,
        "appeal_row": 5, "origin_row": 6, "sealed": 7, "fork": 8, "peer_message": 9,
        "peer_body": 10}
R1, R16, R64, R4096, RPULL, RCLIENT = range(6)  # repeated_maxes[] in fuzz_pb_guard.c


def pick(desc, depth=8, rmax=R64):
    return bytes([DESC[desc], (depth - 1) | rmax << 3])


def appeal_row():
    return msg((1, NUMBER), (2, 1), (3, "0002.0001"), (4, "KZ-75"), (5, "KZ-75"), (6, 2),
               (7, T0), (8, DAY), (9, DAY + 21), (10, DAY + 21), (11, 0), (12, 3),
               (13, "KZ-75-2025-000007"), (14, "Dept"), (15, 1), (16, DAY + 9),
               (17, "KZ-11"), (18, 2), (19, DAY + 3), (20, 1), (21, 4),
               (22, msg((1, 1), (2, 3))), (23, msg((1, 1), (2, 9))), (24, DAY - 5),
               (25, bytes(16)), (26, DAY + 10), (27, DAY + 9), (28, DAY), (29, 1))


def responses():
    row = appeal_row()
    hist = [msg((1, k), (2, "KZ-75"), (3, s), (4, T0 + s), (5, "detail"), (6, ACTOR))
            for s, k in enumerate(["filed", "assigned", "answered"], start=3)]
    personal = msg((1, "Name"), (2, iin("90010130001")), (3, "Addr"), (4, "Tel"), (5, "Subj"),
                   (6, "Body"), (7, "Answer"))
    items = [msg((1, row), (2, i % 2), (3, i)) for i in range(3)]
    return {
        "error": msg((1, msg((1, 3), (2, "cannot close it: it is registered")))),
        "error-storage-failed": msg((1, msg((1, 12), (2, "a sync of the store failed: the "
                                                          "node stopped writing")))),
        "hello": msg((13, msg((1, "KZ-75"), (2, PK)))),
        "receipt": msg((10, msg((1, NUMBER), (2, 1), (3, T0), (4, DAY + 21), (5, "KZ-75"),
                                (6, 1), (8, 1), (9, 3), (10, records()[2][1]), (11, PK)))),
        "appeal": msg((11, msg((1, row), (2, 1), (3, -2), (4, hist), (5, personal), (6, 0)))),
        "list": msg((12, msg((1, items), (2, NUMBER)))),
        "info": msg((13, msg((1, "KZ-75"), (2, PK), (3, BOX), (4, 42), (5, 7), (6, DAY),
                             (7, T0), (8, "0.1.0"), (9, 5), (10, 9), (11, 1 << 28),
                             (12, 1 << 20)))),
    }


def peer_bodies():
    recs = [e for _, e in records()]
    mark = msg((1, PK), (2, 3), (3, blake2b256(recs[2])), (4, T0 + 3000))
    run = msg((1, PK), (2, 1), (3, recs[:3]))
    return {
        "pull": msg((1, 1), (2, T0), (10, msg((1, [mark, msg((1, BOX))]), (2, 100),
                                             (3, 1 << 20)))),
        "pulled": msg((1, 1), (2, T0), (11, msg((1, [run]), (2, [mark]), (3, 1),
                                               (4, [msg((1, PK), (2, 2), (3, recs[1:2]))]),
                                               (5, "")))),
        "push": msg((1, 1), (2, T0), (12, msg((1, msg((1, PK), (2, 4), (3, recs[3:5])))))),
        "heads": msg((1, 1), (2, T0), (13, msg((1, [mark, mark])))),
    }


def pbx_seeds():
    recs = records()
    env = recs[2][1]
    bdy = body(3, bytes(32), record_events()[2][1])
    req = request(11, msg((1, NUMBER)))
    seeds = {
        "envelope": pick("envelope", rmax=R16) + env,
        "body": pick("body", rmax=R16) + bdy,
        "client-request": pick("client_request") + client(req, True),
        "request": pick("request") + req,
        "request-for-node": pick("request") + request(11, msg((1, NUMBER)), node="KZ-75"),
        "request-hello": pick("request") + request(22, b""),
        "appeal-row": pick("appeal_row", rmax=R4096) + appeal_row(),
        "origin-row": pick("origin_row", rmax=R4096) + msg(
            (1, PK), (2, 1), (3, "KZ-75"), (4, 15), (5, blake2b256(env)), (6, T0), (7, BOX),
            (8, PK), (9, 1), (10, "fork at seq 9"), (11, T0 + 5)),
        "sealed": pick("sealed", rmax=R16) + msg((1, NUMBER), (2, "Name"), (3, iin("90010130001")),
                                                 (4, "Addr"), (5, "Tel"), (6, "Subj"),
                                                 (7, "Body")),
        "bad-depth-1-nested": pick("response", depth=1) + responses()["appeal"],
        "bad-repeated-over-1": pick("response", rmax=R1) + responses()["list"],
        "bad-group": pick("body") + b"\x53\x54",
        "bad-varint": pick("request") + b"\x08" + b"\xff" * 10,
        "bad-length-past-end": pick("envelope") + b"\x0a\x7f\x00",
        "bad-field-zero": pick("appeal_row") + b"\x00\x01",
    }
    for name, m in responses().items():
        seeds[f"response-{name}"] = pick("response", rmax=RCLIENT) + m
    bodies = peer_bodies()
    for name, m in bodies.items():
        seeds[f"peer-body-{name}"] = pick("peer_body", rmax=RPULL) + m
    seeds["peer-message"] = pick("peer_message", rmax=R16) + msg(
        (1, bodies["heads"]), (2, PK), (3, ed25519_sign(FUZZ_KEY_SEED, bodies["heads"])))
    seeds["fork"] = pick("fork", rmax=R4096) + msg(
        (1, PK), (2, 3), (3, recs[2][1]), (4, recs[3][1]), (5, "KZ-11"), (6, T0))
    return seeds


# ---- peer messages for fuzz_peer (proto/repl.proto, cluster/peermsg.c) ----

BOX11 = bytes(range(32, 64))  # KZ-11's box key
HEAD_SEQ, HEAD_HASH = 3, bytes([0x33]) * 32  # fuzz_peer.c's second base: records 1..3 held
ZERO = bytes(32)


def genesis(juris, box):
    return event(10, (1, juris), (2, box))


def heartbeat(n):
    return event(21, (1, n))


def rotated(new_key, from_seq):
    return event(24, (1, new_key), (2, from_seq), (3, bytes(range(64, 96))))


def signed_record(seed, origin, seq, prev, ev):
    """An envelope of `origin`'s log signed by the key of `seed`, in the name
    of the administrator, as a node signs its genesis and heartbeats."""
    b = msg((1, origin), (2, seq), (3, prev), (4, T0 + seq * 1000), (5, ADMIN), ev)
    return msg((1, b), (2, ed25519_sign(seed, b)))


def chain(seed, origin, first_seq, prev, events):
    """Records first_seq.. of `origin`, each linked to the one before."""
    out = []
    for i, ev in enumerate(events):
        out.append(signed_record(seed, origin, first_seq + i, prev, ev))
        prev = blake2b256(out[-1])
    return out


def run(origin, first_seq, recs):
    return msg((1, origin), (2, first_seq), (3, recs))


def mark(origin, seq, head):
    return msg((1, origin), (2, seq), (3, head), (4, T0 + seq * 1000))


def peer_body(num, m, version=1):
    return msg((1, version), (2, T0), (num, m))


def peer_message(body_bytes, seed=FUZZ_KEY_SEED, sender=PK, proof=None):
    """A PeerMessage: Ed25519 by the key of `seed` over "appeal-peer-v1" ||
    BLAKE2b-256(body), sent as `sender`, with key proof records `proof`."""
    sig = ed25519_sign(seed, b"appeal-peer-v1" + blake2b256(body_bytes))
    return msg((1, body_bytes), (2, sender), (3, sig), (4, proof or []))


def peer_seeds():
    kz75 = chain(FUZZ_KEY_SEED, PK, 1, ZERO, [genesis("KZ-75", BOX), heartbeat(1), heartbeat(2)])
    kz11 = chain(KZ11_SEED, KZ11_PK, 1, ZERO, [genesis("KZ-11", BOX11), heartbeat(1)])
    marks = [mark(PK, 3, blake2b256(kz75[2])), mark(KZ11_PK, 2, blake2b256(kz11[1]))]
    pulled = peer_body(11, msg((1, [run(PK, 1, kz75)]), (2, marks[0]), (3, 0)))
    push = peer_body(12, msg((1, run(PK, HEAD_SEQ + 1, chain(FUZZ_KEY_SEED, PK, HEAD_SEQ + 1,
                                                              HEAD_HASH, [heartbeat(3),
                                                                          heartbeat(4)])))))
    # KZ-75 rotates its key at seq 4; the successor signs seq 5 and the message.
    rot = signed_record(FUZZ_KEY_SEED, PK, HEAD_SEQ + 1, HEAD_HASH, rotated(NEXT_PK, HEAD_SEQ + 2))
    after = signed_record(NEXT_SEED, PK, HEAD_SEQ + 2, blake2b256(rot), heartbeat(5))
    push_rot = peer_body(12, msg((1, run(PK, HEAD_SEQ + 1, [rot, after]))))
    heads = peer_body(13, msg((1, marks)))
    # The same rotation signed by the successor itself: proves nothing.
    forged = signed_record(NEXT_SEED, PK, HEAD_SEQ + 1, HEAD_HASH, rotated(NEXT_PK, HEAD_SEQ + 2))
    seeds = {
        "pull": peer_message(peer_body(10, msg((1, marks), (2, 20000), (3, 8 << 20),
                                               (4, [PK, KZ11_PK]))), KZ11_SEED, KZ11_PK),
        "pulled-3-records": peer_message(pulled),
        "pulled-two-origins": peer_message(peer_body(11, msg(
            (1, [run(PK, 1, kz75), run(KZ11_PK, 1, kz11)]), (2, marks), (3, 1),
            (4, [run(PK, 2, kz75[1:2])])))),
        "pulled-refusal": peer_message(peer_body(11, msg((5, "unknown peer: its key is not in "
                                                             "the cluster file")))),
        "push": peer_message(push),
        "heads": peer_message(heads, KZ11_SEED, KZ11_PK),
        "query": peer_message(peer_body(14, msg((1, msg((1, "KZ-75"), (5, [0, 2]))),
                                                (2, ["region", "status"]), (3, 1), (4, 2000))),
                              KZ11_SEED, KZ11_PK),
        "query-result": peer_message(peer_body(15, msg(
            (1, "live"), (2, ["status"]),
            (3, msg((1, "registered"), (2, 5), (3, 3), (4, 1), (5, 2), (6, 2), (7, [3, 1]))),
            (4, msg((1, "KZ-75"), (2, "live"), (3, 0), (4, 0))), (5, DAY), (6, "KZ-75")))),
        "key-proof-push": peer_message(push_rot, NEXT_SEED, PK, [rot]),
        "key-proof-heads": peer_message(heads, NEXT_SEED, PK, [rot]),
        # Bodies alone: fuzz_peer takes what is not a PeerMessage as a body.
        "body-pulled": pulled,
        "body-push-key-rotated": push_rot,
        # Malformed, unknown, forged.
        "bad-empty": b"",
        "bad-truncated": peer_message(pulled)[:-20],
        "bad-sig-flipped": (lambda m: m[:-1] + bytes([m[-1] ^ 1]))(peer_message(heads)),
        "bad-sig-63-bytes": msg((1, heads), (2, PK), (3, bytes(63))),
        "bad-sender-31-bytes": peer_message(heads, sender=PK[:31]),
        "bad-unknown-sender": peer_message(heads, bytes([0x45]) * 32,
                                           ed25519_public(bytes([0x45]) * 32)),
        "bad-version-2": peer_message(peer_body(13, msg((1, marks)), version=2)),
        "bad-body-garbage": peer_message(b"\x08\x01\x5a\xff\xff"),
        "bad-successor-without-proof": peer_message(push_rot, NEXT_SEED, PK),
        "bad-proof-signed-by-successor": peer_message(push_rot, NEXT_SEED, PK, [forged]),
        "bad-proof-not-rotation": peer_message(heads, NEXT_SEED, PK, [kz75[1]]),
        "bad-proof-other-origin": peer_message(
            heads, NEXT_SEED, PK,
            [signed_record(KZ11_SEED, KZ11_PK, 3, HEAD_HASH, rotated(NEXT_PK, 4))]),
        "bad-proof-empty-record": peer_message(heads, NEXT_SEED, PK, [b""]),
        "bad-proof-17-records": peer_message(heads, NEXT_SEED, PK, [rot] * 17),
        "bad-run-gap": peer_message(peer_body(11, msg((1, run(PK, 2, kz75[1:]))))),
        "bad-run-broken-link": peer_message(peer_body(11, msg((1, run(PK, 1, kz75[:2] + chain(
            FUZZ_KEY_SEED, PK, 3, ZERO, [heartbeat(2)])))))),
        "bad-run-last-sig": peer_message(peer_body(11, msg((1, run(PK, 1, kz75[:2] + [
            signed_record(KZ11_SEED, PK, 3, blake2b256(kz75[1]), heartbeat(2))]))))),
        "bad-run-genesis-other-juris": peer_message(peer_body(11, msg((1, run(PK, 1, chain(
            FUZZ_KEY_SEED, PK, 1, ZERO, [genesis("KZ-11", BOX)])))))),
        "bad-run-empty-record": peer_message(peer_body(11, msg((1, run(PK, 1, [kz75[0], b""]))))),
        "bad-run-other-origin": peer_message(peer_body(12, msg((1, run(PK, 1, kz11))))),
        "bad-run-origin-31-bytes": peer_message(peer_body(12, msg((1, run(PK[:31], 1, kz75))))),
        "bad-run-rotation-forged": peer_message(peer_body(12, msg((1, run(PK, HEAD_SEQ + 1, [
            forged, signed_record(NEXT_SEED, PK, HEAD_SEQ + 2, blake2b256(forged),
                                  heartbeat(5))]))))),
    }
    return seeds


# ---- file texts (node/domain/ruleset.c, node/domain/cal.c) ----


def c_string(path, name):
    """The value of `const char name[] = "..." "...";` in a C source."""
    src = open(os.path.join(ROOT, path), encoding="utf-8").read()
    m = re.search(r"const char " + re.escape(name) + r"\[\]\s*=\s*((?:\s*\"(?:[^\"\\]|\\.)*\")+)\s*;",
                  src)
    if m is None:
        sys.exit(f"make_seeds.py: {name} not found in {path}")
    out = []
    for lit in re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1)):
        out.append(re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t", "r": "\r"}.get(
            e.group(1), e.group(1)), lit))
    return "".join(out)


def conf_seeds():
    default = c_string("node/domain/ruleset.c", "rules_default_conf")
    return {
        "default.conf": default,
        "default-crlf.conf": default.replace("\n", "\r\n"),
        "empty.conf": "",
        "comments.conf": "# only a comment\n\n   # indented\n",
        "minimal.conf": "term_working_days = 10\n",
        "bounds-low.conf": "utc_offset_minutes=-720\nterm_working_days=1\nextension_max_months=0\n"
                           "forward_working_days=0\ncomplaint_window_months=1\n"
                           "reopen_working_days=1\nco_signers_max=0\nanonymous_types=\n",
        "bounds-high.conf": "utc_offset_minutes = 840\nterm_working_days = 365\n"
                            "extension_max_months = 24\nforward_working_days = 60\n"
                            "complaint_window_months = 120\nreopen_working_days = 365\n"
                            "co_signers_max = 100000000\n"
                            "anonymous_types = statement, proposal,request complaint,report,"
                            "feedback\n",
        "bad-out-of-range.conf": "utc_offset_minutes = 841\n",
        "bad-not-a-number.conf": "term_working_days = 15 days\n",
        "bad-no-equals.conf": "term_working_days 15\n",
        "bad-unknown-key.conf": "term_working_dayz = 10\n",
        "bad-unknown-type.conf": "anonymous_types = rumour\n",
        "bad-negative.conf": "co_signers_max = -1\n",
        "bad-overflow.conf": "term_working_days = 99999999999999999999999\n",
        "long-types-truncated.conf": "anonymous_types = " + "report, " * 60 + "\n",
    }


def holiday_seeds():
    default = c_string("node/domain/cal.c", "cal_default_text")
    return {
        "default.conf": default,
        "default-crlf.conf": default.replace("\n", "\r\n"),
        "empty.conf": "",
        "leap-and-stays.conf": "fixed 02-29 Leap day\nfixed 01-07 stays Christmas\n"
                               "fixed 12-31 stays\n",
        "range-edges.conf": "off 2000-01-03 First\nwork 2000-01-01 Saturday made working\n"
                            "off 2099-12-31 Last\nwork 2099-12-26 Saturday\n"
                            "off 1950-05-05 Before the table\noff 2150-01-01 After it\n",
        "transfers.conf": "fixed 03-08 Women's Day\noff 2026-03-09 Transfer\n"
                          "work 2026-03-14 Working Saturday\n\t off  2026-01-05\tx\n",
        "fixed-max.conf": "".join(f"fixed {1 + i // 28:02d}-{1 + i % 28:02d} h{i}\n"
                                  for i in range(64)),
        "bad-fixed-over-max.conf": "".join(f"fixed {1 + i // 28:02d}-{1 + i % 28:02d} h{i}\n"
                                           for i in range(65)),
        "bad-feb-30.conf": "fixed 02-30 Nope\n",
        "bad-kind.conf": "holiday 2026-01-01 New Year\n",
        "bad-month-13.conf": "off 2026-13-01 Nope\n",
        "bad-short-date.conf": "fixed 1-1 New Year\n",
        "bad-no-date.conf": "off\n",
        "bad-date-format.conf": "off 26-01-01 x\nwork 2026/01/03 y\n",
    }


def category_seeds():
    default = c_string("node/domain/ruleset.c", "rules_default_categories")
    return {
        "default.tsv": default,
        "default-crlf.tsv": default.replace("\n", "\r\n"),
        "one.tsv": "1\tOne\n",
        "unsorted.tsv": "0002\tB\n0001.0001\tA.A\n0001\tA\n 0003 \t C \n",
        "long-fields.tsv": "0" * 31 + "\t" + "Ж" * 80 + "\n",
        "bad-empty.tsv": "",
        "bad-comments-only.tsv": "# nothing\n",
        "bad-duplicate.tsv": "1\tOne\n1\tAgain\n",
        "bad-code.tsv": "x1\tBad\n",
        "bad-no-tab.tsv": "0001 State\n",
        "bad-empty-code.tsv": "\tNameless\n",
        "bad-code-too-long.tsv": "0" * 32 + "\tToo long\n",
    }


def cluster_entry(juris, seed, peer=None, pub=None):
    lines = [f"node {juris}", f"  sign {blake2b256(seed + b'sign').hex()}",
             f"  box  {blake2b256(seed + b'box').hex()}"]
    if peer:
        lines.append(f"  peer {peer}")
    if pub:
        lines.append(f"  pub  {pub}")
    return "\n".join(lines) + "\n"


def cluster_seeds():
    three = (cluster_entry("KZ-75", b"a", "tcp://10.0.0.75:7101") +
             cluster_entry("KZ-11", b"b", "tcp://10.0.0.11:7101") +
             cluster_entry("KZ", b"c", "tls+tcp://[::1]:7101", "tls+tcp://[::1]:7200"))
    one = cluster_entry("KZ-75", b"a", "tcp://127.0.0.1:7101")
    return {
        "three-nodes": "# the federation\n" + three,
        "three-nodes-crlf": three.replace("\n", "\r\n"),
        "one-node": one,
        "no-peer-url": cluster_entry("KZ-19", b"d") + "# takes no connections\n",
        "comments-inline": one.replace("\n", "   # note\n"),
        "bad-empty": "",
        "bad-key-before-node": "  sign " + "00" * 32 + "\n" + one,
        "bad-short-key": one.replace(blake2b256(b"asign").hex(), "abcd"),
        "bad-duplicate-key": one + one.replace("KZ-75", "KZ-11", 1),
        "bad-duplicate-juris": one + cluster_entry("KZ-75", b"z"),
        "bad-juris": cluster_entry("kz-75", b"a"),
        "bad-unknown-key": one + "  port 7101\n",
        "bad-no-box": "\n".join(one.splitlines()[:2]) + "\n",
        "bad-scheme": cluster_entry("KZ-75", b"a", "http://10.0.0.75:7101"),
        "bad-port-no-room": cluster_entry("KZ-75", b"a", "tcp://10.0.0.75:65535"),
        "bad-ipc-no-pub": cluster_entry("KZ-75", b"a", "ipc:///tmp/kz75.peer"),
        "bad-no-value": "node\n",
    }


def http_seeds():
    """Two bytes of body limit (big-endian), then what a client sent."""
    lim = lambda n: bytes([n >> 8, n & 0xFF])  # noqa: E731
    get = (b"GET /open311/v2/requests/KZ-75-2026-000001.json?locale=kk HTTP/1.1\r\n"
           b"Host: 127.0.0.1\r\nAccept-Language: ru-RU,ru;q=0.9,kk;q=0.8\r\n\r\n")
    form = b"api_key=ab12&service_code=01.02&description=%D0%B0+b&attribute%5Btype%5D=request"
    post = (b"POST /open311/v2/requests.json HTTP/1.1\r\nHost: h\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form)
    return {
        "get-open311": lim(65535) + get,
        "post-form": lim(65535) + post,
        "post-expect": lim(4096) + post.replace(b"Host: h\r\n", b"Host: h\r\nExpect: 100-continue\r\n"),
        "http10-keepalive": lim(0) + b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "close": lim(0) + b"HEAD /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "incomplete": lim(0) + b"GET / HTTP/1.1\r\nHost: h\r\n",
        "bad-chunked": lim(100) + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "bad-gzip": lim(100) + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "bad-too-large": lim(10) + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
        "bad-two-lengths": lim(100) + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                      b"Content-Length: 2\r\n\r\n",
        "bad-version": lim(0) + b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        "bad-no-host": lim(0) + b"GET / HTTP/1.1\r\n\r\n",
        "bad-folded": lim(0) + b"GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n",
        "bad-bare-lf": lim(0) + b"GET / HTTP/1.1\nHost: h\r\n\r\n",
        "bad-control": lim(0) + b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n",
        "bad-too-many": lim(0) + b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 65 + b"Host: h\r\n\r\n",
        "bad-too-long": lim(0) + b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n",
    }


# ---- writing ----


def corpora():
    enc = lambda d: {k: v.encode() for k, v in d.items()}  # noqa: E731
    return {
        "record": record_seeds(),
        "request": request_seeds(),
        "pb_guard": pbx_seeds(),
        "peer": peer_seeds(),
        "rules_conf": enc(conf_seeds()),
        "holidays": enc(holiday_seeds()),
        "categories": enc(category_seeds()),
        "cluster_file": enc(cluster_seeds()),
        "http_request": http_seeds(),
    }


def write(root):
    for target, seeds in corpora().items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


def same(a, b):
    """True if directory trees a and b hold the same files and bytes."""
    files = lambda r: sorted(os.path.relpath(os.path.join(p, f), r)  # noqa: E731
                             for p, _, fs in os.walk(r) for f in fs)
    if files(a) != files(b):
        return False
    return all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
               for f in files(a))


def main():
    corpus = os.path.join(HERE, "corpus")
    if sys.argv[1:] == ["--check"]:
        with tempfile.TemporaryDirectory() as tmp:
            write(tmp)
            if not os.path.isdir(corpus) or not same(tmp, corpus):
                print("tests/fuzz/corpus differs from make_seeds.py's output: "
                      "run tests/fuzz/make_seeds.py and commit", file=sys.stderr)
                return 1
        return 0
    if sys.argv[1:]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    shutil.rmtree(corpus, ignore_errors=True)
    write(corpus)
    for target in sorted(os.listdir(corpus)):
        d = os.path.join(corpus, target)
        names = os.listdir(d)
        total = sum(os.path.getsize(os.path.join(d, n)) for n in names)
        print(f"{target:12} {len(names):3} files {total:6} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
