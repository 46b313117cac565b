#!/usr/bin/env python3
"""pyverify: a second verifier of a node's log, written from
docs/record-format.md alone (standard library only, plus `mdb_dump` from
lmdb-utils to read the LMDB file).

    pyverify.py --data DIR [--cluster FILE] [--origin KEY]... [--admin KEY]

It walks every origin the node holds, as section 10.1 says: the records are
1..n without a gap, each passes the structural checks of section 5 and the
field rules of section 4, names its origin and seq, links to the previous
record's hash, seq 1 is a Genesis, every signature verifies under the key in
force (section 6.3, key rotation), no record names as its actor a key its
origin revoked before it (section 6.4), and the origin row's head matches.
With --cluster, every origin must be listed and its genesis must match its
entry; with --origin, every origin must be one of the keys given. It prints
"ok: ..." and exits 0, or "FAILED: ..." naming the origin and seq, exit 1.

Where this file and the doc disagree, fix the doc or this file: the test
tests/integration/test_pyverify.py holds both to the node's verdicts.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys


class Bad(Exception):
    """A record or a log that fails a rule of the doc."""


# ---- Ed25519 verification (RFC 8032 section 5.1.7, with libsodium's extra
# refusals: non-canonical S or public key, small-order R or public key) ----

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - c, dd + c, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _encode(pt):
    x, y, z, _ = pt
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(s):
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _small_order(pt):
    return _encode(_mul(8, pt)) == _encode((0, 1, 1, 0))


_BY = 4 * pow(5, P - 2, P) % P
BASE = _decode(_BY.to_bytes(32, "little"))


def ed25519_verify(pk, msg, sig):
    if len(pk) != 32 or len(sig) != 64:
        return False
    a, r = _decode(pk), _decode(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a is None or r is None or s >= L or _small_order(a) or _small_order(r):
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + pk + msg).digest(), "little") % L
    neg_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
    return _encode(_add(_mul(s, BASE), _mul(h, neg_a))) == sig[:32]


def blake2b256(data):
    return hashlib.blake2b(data, digest_size=32).digest()


# ---- protobuf wire format (section 5, "Decoding") ----

VARINT_BYTES_MAX = 10
DEPTH_MAX = 8
RECORD_BYTES_MAX = 131072


def varint(b, i):
    v = 0
    for n in range(VARINT_BYTES_MAX):
        if i >= len(b):
            raise Bad("malformed message: truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << (7 * n)
        if not c & 0x80:
            return v & (2**64 - 1), i
    raise Bad("malformed message: varint longer than 10 bytes")


def fields(b):
    """(number, wire type, value) of one message: an int for a varint,
    the bytes for wire types 1, 2 and 5."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if num == 0 or num > 2**29 - 1:
            raise Bad("malformed message: bad field number")
        if wt == 0:
            v, i = varint(b, i)
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            if i + n > len(b):
                raise Bad("malformed message: truncated")
            v, i = b[i:i + n], i + n
        elif wt == 2:
            n, i = varint(b, i)
            if n > len(b) - i:
                raise Bad("malformed message: length past the end")
            v, i = b[i:i + n], i + n
        else:
            raise Bad("malformed message: wire type %d" % wt)
        yield num, wt, v


def _int(bits, signed):
    def conv(v):
        v &= (1 << bits) - 1
        return v - (1 << bits) if signed and v >> (bits - 1) else v
    return conv


SCALAR = {"uint32": _int(32, False), "int32": _int(32, True), "enum": _int(32, True),
          "uint64": _int(64, False), "int64": _int(64, True), "bool": lambda v: v != 0}
DEFAULT = {"bytes": b"", "string": b""}


def decode(schema, b, depth=DEPTH_MAX):
    """A message as a dict {name: value} (absent fields hold their default).
    Refuses what section 5 refuses: a known field twice, a known field with
    the wrong wire type, a NUL in a known string field, nesting past 8."""
    if depth == 0:
        raise Bad("message nested too deeply")
    out, seen = {}, set()
    for num, wt, v in fields(b):
        if num not in schema:
            continue  # unknown: ignored (still hashed and signed)
        name, kind = schema[num]
        if num in seen:
            raise Bad("field %s appears more than once" % name)
        seen.add(num)
        if not isinstance(kind, dict) and kind in SCALAR:
            if wt != 0:
                raise Bad("field %s has the wrong wire type" % name)
            out[name] = SCALAR[kind](v)
            continue
        if wt != 2:
            raise Bad("field %s has the wrong wire type" % name)
        if kind == "string" and b"\0" in v:
            raise Bad("string field %s holds a NUL byte" % name)
        out[name] = decode(kind, v, depth - 1) if isinstance(kind, dict) else v
        if isinstance(kind, dict):
            out["_last_message"] = name  # the oneof: the last event present wins
    for num, (name, kind) in schema.items():
        if name not in out:
            out[name] = DEFAULT.get(kind, 0) if not isinstance(kind, dict) else None
    return out


def msg(*spec):
    return {num: (name, kind) for num, name, kind in spec}


NUMBER_REF = [(1, "number", "string"), (2, "version", "uint32")]


def SEALED_REASON(n):
    """sealed_reason at field n and the data_key_id naming its key at n + 1."""
    return [(n, "sealed_reason", "bytes"), (n + 1, "data_key_id", "bytes")]
EVENTS = {
    10: ("genesis", msg((1, "jurisdiction", "string"), (2, "box_key", "bytes"))),
    11: ("filed", msg(*NUMBER_REF, (3, "type", "enum"), (4, "category", "string"),
                      (5, "jurisdiction", "string"), (6, "registered_ms", "int64"),
                      (7, "deadline_day", "int32"), (8, "anonymous", "bool"),
                      (9, "co_signers", "uint32"), (10, "repeat_of", "string"),
                      (11, "learned_day", "int32"), (12, "late_reason", "string"),
                      (13, "sealed", "bytes"), (14, "applicant_tag", "bytes"),
                      (15, "data_key_id", "bytes"), (16, "urgent", "bool"),
                      (17, "registered_day", "int32"), (18, "sealed_late_reason", "bytes"),
                      (19, "lang", "string"), (20, "access_hash", "bytes"),
                      (21, "complaint_of", "string"), (22, "region_sealed", "bytes"))),
    12: ("assigned", msg(*NUMBER_REF, (3, "assignee", "string"))),
    13: ("extended", msg(*NUMBER_REF, (3, "until_day", "int32"), (4, "reason", "string"),
                         *SEALED_REASON(5))),
    14: ("forwarded", msg(*NUMBER_REF, (3, "to_jurisdiction", "string"), (4, "reason", "string"),
                          (5, "sealed", "bytes"), (6, "late", "bool"), *SEALED_REASON(7),
                          (9, "boxed_reason", "bytes"))),
    15: ("accepted", msg(*NUMBER_REF, (3, "deadline_day", "int32"), (4, "sealed", "bytes"),
                         (5, "applicant_tag", "bytes"), (6, "data_key_id", "bytes"),
                         (7, "start_day", "int32"), (8, "region_sealed", "bytes"))),
    16: ("returned", msg(*NUMBER_REF, (3, "reason", "string"), *SEALED_REASON(4),
                         (6, "boxed_reason", "bytes"))),
    17: ("answered", msg(*NUMBER_REF, (3, "outcome", "enum"), (4, "sealed_text", "bytes"),
                         (5, "answered_day", "int32"), (6, "data_key_id", "bytes"))),
    18: ("closed", msg(*NUMBER_REF, (3, "closed_day", "int32"))),
    19: ("reopened", msg(*NUMBER_REF, (3, "reason", "string"), (4, "deadline_day", "int32"),
                         (5, "start_day", "int32"), *SEALED_REASON(6))),
    20: ("withdrawn", msg(*NUMBER_REF, (3, "reason", "string"), *SEALED_REASON(4))),
    21: ("heartbeat", msg((1, "records_total", "uint64"))),
    22: ("key_granted", msg((1, "key", "bytes"), (2, "role", "string"),
                            (3, "jurisdiction", "string"), (4, "label", "string"),
                            (5, "rate_per_minute", "uint32"))),
    23: ("key_revoked", msg((1, "key", "bytes"), (2, "reason", "string"))),
    24: ("key_rotated", msg((1, "new_key", "bytes"), (2, "from_seq", "uint64"),
                            (3, "new_box_key", "bytes"))),
    25: ("rated", msg(*NUMBER_REF, (3, "rating", "enum"), (4, "sealed_comment", "bytes"),
                      (5, "data_key_id", "bytes"), (6, "rated_day", "int32"))),
}
ENVELOPE = msg((1, "body", "bytes"), (2, "sig", "bytes"))
BODY = msg((1, "origin", "bytes"), (2, "seq", "uint64"), (3, "prev", "bytes"),
           (4, "time_ms", "int64"), (5, "actor", "bytes"),
           *[(n, name, schema) for n, (name, schema) in EVENTS.items()])
ORIGIN_ROW = msg((1, "origin", "bytes"), (2, "idx", "uint32"), (3, "jurisdiction", "string"),
                 (4, "head_seq", "uint64"), (5, "head_hash", "bytes"))


# ---- field rules (sections 4, 5 and 8) ----

# A region, or an office: its region, '.', a 9-digit KATO code not all zeros, at most 15
# bytes in all (section 8.1).
JURIS = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?(\.(?!0{9})[0-9]{9})?")
NUMBER = re.compile(r"([A-Z]{2}(-[A-Z0-9]{1,3})?(\.(?!0{9})[0-9]{9})?)-[0-9]{4}-[0-9]{6,8}")
JURIS_CHARS_MAX = 15
ROLES = {b"registrar", b"official", b"national", b"operator", b"admin", b"channel"}
CATEGORY_BYTES_MAX, REASON_BYTES_MAX, ASSIGNEE_BYTES_MAX, LABEL_BYTES_MAX = 31, 2000, 200, 200
SEALED_BYTES_MAX, APPLICANT_TAG_BYTES, DATA_KEY_ID_BYTES = 81920, 16, 8
ACCESS_HASH_BYTES = 48  # AppealFiled.access_hash: salt (16) || BLAKE2b-256 of the code
SEAL_OVERHEAD_BYTES, BOX_SEAL_OVERHEAD_BYTES, REASON_AD_BYTES = 40, 48, 64
SEALED_REASON_BYTES_MAX = REASON_BYTES_MAX + SEAL_OVERHEAD_BYTES
BOXED_REASON_BYTES_MAX = REASON_AD_BYTES + REASON_BYTES_MAX + BOX_SEAL_OVERHEAD_BYTES
CATEGORY = re.compile(rb"[0-9.]{1,31}")
REASONS = {"filed": ("late_reason", "sealed_late_reason"), "extended": ("reason", "sealed_reason"),
           "forwarded": ("reason", "sealed_reason"), "returned": ("reason", "sealed_reason"),
           "reopened": ("reason", "sealed_reason"), "withdrawn": ("reason", "sealed_reason")}


def juris_ok(s):
    return JURIS.fullmatch(s.decode("latin-1")) is not None and len(s) <= JURIS_CHARS_MAX


def number_ok(s):
    m = NUMBER.fullmatch(s.decode("latin-1"))
    return m is not None and len(m.group(1)) <= JURIS_CHARS_MAX and len(s) <= 31


BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def text_problem(s, multiline):
    """Section 5, text rules: None if `s` is clean text, else what it holds.
    Valid UTF-8 (Python's strict decoder refuses overlong forms, surrogates
    and code points above U+10FFFF); no C0 control, DEL or C1 control; no
    bidirectional control; multi-line fields allow TAB, LF, and CR when an
    LF follows it; single-line fields also refuse U+2028 and U+2029."""
    try:
        t = s.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    for i, c in enumerate(t):
        cp = ord(c)
        if c in "\t\n\r" or cp in (0x2028, 0x2029):
            if not multiline:
                return "a line break or tab (one line of text is expected)"
            if c == "\r" and t[i + 1:i + 2] != "\n":
                return "a control character"
        elif cp < 0x20 or cp == 0x7F:
            return "a control character"
        elif 0x80 <= cp <= 0x9F:
            return "a control character (C1)"
        elif cp in BIDI_CONTROLS:
            return "a bidirectional control character"
    return None


def text_ok(s, multiline):
    return text_problem(s, multiline) is None


def need(cond, what):
    if not cond:
        raise Bad(what)


def text(s, limit, multiline, what):
    need(len(s) <= limit, "record field %s longer than %d bytes" % (what, limit))
    why = text_problem(s, multiline)
    need(why is None, "record field %s holds %s" % (what, why))


def size(b, allowed, what):
    need(len(b) in allowed, "record field %s has %d bytes" % (what, len(b)))


def ref(e):
    need(number_ok(e["number"]), "record names a malformed appeal number")


def reason(e, what="reason"):
    text(e[what], REASON_BYTES_MAX, False, what)  # every record field is one line


def check_filed(f):
    ref(f)
    need(1 <= f["type"] <= 6, "record has an unknown appeal type")
    need(f["version"] == 0, "a filing has version 0")
    need(CATEGORY.fullmatch(f["category"]) is not None,
         "record field category is not a classifier code (1..31 digits and dots)")
    need(juris_ok(f["jurisdiction"]), "record has a malformed jurisdiction")
    need(f["repeat_of"] == b"" or number_ok(f["repeat_of"]), "record has a malformed repeat_of")
    reason(f, "late_reason")
    need(len(f["sealed"]) <= SEALED_BYTES_MAX, "record field sealed is too long")
    need(len(f["region_sealed"]) <= SEALED_BYTES_MAX, "record field region_sealed is too long")
    need(f["region_sealed"] == b"" or b"." in f["jurisdiction"],
         "record has region_sealed on a region's filing")
    size(f["applicant_tag"], (0, APPLICANT_TAG_BYTES), "applicant_tag")
    size(f["data_key_id"], (0, DATA_KEY_ID_BYTES), "data_key_id")
    need(f["lang"] in (b"", b"kk", b"ru", b"en"), "record field lang is not kk, ru or en")
    size(f["access_hash"], (0, ACCESS_HASH_BYTES), "access_hash")
    if f["complaint_of"] != b"":
        need(number_ok(f["complaint_of"]), "record has a malformed complaint_of")
        need(f["type"] == 4, "record has complaint_of on an appeal not of type complaint")
        need(f["complaint_of"] != f["number"], "record has complaint_of naming the appeal itself")


def check_event(kind, e, seq):
    sealed_ok = lambda b: need(len(b) <= SEALED_BYTES_MAX, "a sealed field is too long")
    if kind == "genesis":
        need(juris_ok(e["jurisdiction"]), "genesis has a malformed jurisdiction")
        size(e["box_key"], (32,), "box_key")
    elif kind == "filed":
        check_filed(e)
    elif kind == "assigned":
        ref(e)
        text(e["assignee"], ASSIGNEE_BYTES_MAX, False, "assignee")
    elif kind in ("extended", "returned", "reopened", "withdrawn"):
        ref(e)
        reason(e)
    elif kind == "forwarded":
        need(juris_ok(e["to_jurisdiction"]), "forward names a malformed jurisdiction")
        ref(e)
        reason(e)
        sealed_ok(e["sealed"])
    elif kind == "accepted":
        ref(e)
        sealed_ok(e["sealed"])
        sealed_ok(e["region_sealed"])
        size(e["applicant_tag"], (0, APPLICANT_TAG_BYTES), "applicant_tag")
        size(e["data_key_id"], (0, DATA_KEY_ID_BYTES), "data_key_id")
    elif kind == "answered":
        need(1 <= e["outcome"] <= 4, "answer has an unknown outcome")
        ref(e)
        sealed_ok(e["sealed_text"])
        size(e["data_key_id"], (0, DATA_KEY_ID_BYTES), "data_key_id")
    elif kind == "closed":
        ref(e)
    elif kind == "rated":
        need(1 <= e["rating"] <= 2, "rating is neither satisfied nor not satisfied")
        ref(e)
        sealed_ok(e["sealed_comment"])
        size(e["data_key_id"], (0, DATA_KEY_ID_BYTES), "data_key_id")
    elif kind == "key_granted":
        need(e["jurisdiction"] == b"" or juris_ok(e["jurisdiction"]),
             "grant names a malformed jurisdiction")
        need(e["role"] in ROLES, "grant names no known role")
        need(e["rate_per_minute"] == 0 or e["role"] == b"channel",
             "only a channel's grant carries a rate")
        size(e["key"], (32,), "key")
        text(e["label"], LABEL_BYTES_MAX, False, "label")
    elif kind == "key_revoked":
        size(e["key"], (32,), "key")
        reason(e)
    elif kind == "key_rotated":
        need(e["from_seq"] == seq + 1, "a rotated key must sign from the next record on")
        size(e["new_key"], (32,), "new_key")
        size(e["new_box_key"], (0, 32), "new_box_key")


def check_reason(kind, e):
    """Section 7.6: a reason is clear (legacy) or sealed, never both; a
    sealed one has its data key id, and a boxed copy exactly when sealed
    (forwards and returns)."""
    if kind not in REASONS:
        return
    clear, sealed_name = REASONS[kind]
    sealed = e[sealed_name]
    need(not (sealed and e[clear]), "record holds a reason both in clear and sealed")
    if sealed:
        need(SEAL_OVERHEAD_BYTES + 1 <= len(sealed) <= SEALED_REASON_BYTES_MAX,
             "record field sealed_reason has %d bytes" % len(sealed))
        need(len(e["data_key_id"]) == DATA_KEY_ID_BYTES,
             "record field data_key_id must name the key of sealed_reason")
    elif kind != "filed":
        need(e["data_key_id"] == b"", "record field data_key_id is set without a sealed_reason")
    if "boxed_reason" in e:
        need(bool(e["boxed_reason"]) == bool(sealed),
             "record has a boxed_reason without a sealed_reason or the reverse")
        if sealed:
            need(BOX_SEAL_OVERHEAD_BYTES + 1 <= len(e["boxed_reason"]) <= BOXED_REASON_BYTES_MAX,
                 "record field boxed_reason has a wrong size")


def decode_record(env):
    """Section 5: the envelope and its body, checked. Returns (envelope, body)."""
    need(len(env) <= RECORD_BYTES_MAX, "record larger than %d bytes" % RECORD_BYTES_MAX)
    e = decode(ENVELOPE, env)
    need(len(e["sig"]) == 64, "record signature is not 64 bytes")
    b = decode(BODY, e["body"])
    size(b["origin"], (32,), "origin")
    size(b["prev"], (32,), "prev")
    size(b["actor"], (0, 32), "actor")
    need(b["seq"] != 0, "record seq is 0")
    kind = b.get("_last_message")
    need(kind is not None, "record carries no known event")
    check_event(kind, b[kind], b["seq"])
    check_reason(kind, b[kind])
    b["kind"] = kind
    return e, b


# ---- one origin's log (sections 6 and 10.1) ----

def walk(origin, envelopes, expect_genesis=None):
    """origin: 32-byte key; envelopes: [(seq, bytes)] in key order. Returns
    (count, head hash). expect_genesis: (jurisdiction, box key) to match."""
    prev, key, revoked = bytes(32), origin, {}
    seq = 0
    for seq_key, env in envelopes:
        seq += 1
        if seq_key != seq:
            raise Bad("seq %d: record missing (gap in the log)" % seq)
        try:
            e, b = decode_record(env)
        except Bad as why:
            raise Bad("seq %d: record does not decode (%s)" % (seq, why))
        if b["seq"] != seq or b["origin"] != origin:
            raise Bad("seq %d: record names another origin or seq than its place" % seq)
        if b["prev"] != prev:
            raise Bad("seq %d: hash link to the previous record does not hold" % seq)
        if seq == 1 and b["kind"] != "genesis":
            raise Bad("seq 1: the first record is not a genesis record")
        if seq == 1 and expect_genesis is not None:
            g = b["genesis"]
            if (g["jurisdiction"], g["box_key"]) != expect_genesis:
                raise Bad("seq 1: genesis does not match the cluster file")
        if not ed25519_verify(key, e["body"], e["sig"]):
            raise Bad("seq %d: bad signature" % seq)
        actor = b["actor"]
        if actor and actor in revoked and seq > revoked[actor]:
            raise Bad("seq %d: acts as key %s, revoked at seq %d"
                      % (seq, actor.hex()[:16], revoked[actor]))
        if b["kind"] == "key_revoked":
            revoked.setdefault(b["key_revoked"]["key"], seq)
        if b["kind"] == "key_rotated":
            key = b["key_rotated"]["new_key"]
        prev = blake2b256(env)
    return seq, prev


# ---- reading the node's LMDB file (section 11) with mdb_dump ----

def dump(db_dir, table):
    p = subprocess.run(["mdb_dump", "-s", table, db_dir], capture_output=True, text=True)
    if p.returncode != 0:
        raise Bad("cannot read table %s of %s: %s" % (table, db_dir, p.stderr.strip()))
    lines = p.stdout.splitlines()
    data = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    return [(bytes.fromhex(data[i].strip()), bytes.fromhex(data[i + 1].strip()))
            for i in range(0, len(data), 2)]


def read_key(arg):
    """64 hex digits, or a key file (comment lines, then one line of hex)."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", arg):
        return bytes.fromhex(arg)
    with open(arg) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    if len(lines) != 1 or not re.fullmatch(r"[0-9a-fA-F]{64}", lines[0]):
        raise Bad("%s holds no 32-byte public key" % arg)
    return bytes.fromhex(lines[0])


def read_cluster(path):
    """{origin key: (jurisdiction, box key)} from a cluster file."""
    out, juris, entry = {}, None, {}

    def close():
        if juris is not None:
            out[bytes.fromhex(entry["sign"])] = (juris.encode(), bytes.fromhex(entry["box"]))
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) != 2:
                continue
            if words[0] == "node":
                close()
                juris, entry = words[1], {}
            else:
                entry[words[0]] = words[1]
    close()
    return out


def verify_node(data_dir, cluster=None, origins=None):
    """Section 10.1 over every origin of DATA/db. Returns (records, origins)."""
    db = os.path.join(data_dir, "db")
    log = {}
    for k, v in dump(db, "log"):
        need(len(k) == 12, "malformed log key")
        log.setdefault(int.from_bytes(k[:4], "big"), []).append((int.from_bytes(k[4:], "big"), v))
    rows = {k: decode(ORIGIN_ROW, v) for k, v in dump(db, "origins")}
    total = 0
    index = dump(db, "origin_idx")
    for k, pk in index:
        idx = int.from_bytes(k, "big")
        row = rows.get(pk)
        kid = hashlib.blake2b(b"appeal-key-id" + pk, digest_size=32).hexdigest()[:16]
        name = "%s (key %s)" % (row["jurisdiction"].decode() if row else "?", kid)
        try:
            need(row is not None and len(pk) == 32, "no origin row")
            if origins is not None:
                need(pk in origins, "origin key not among the trusted keys given")
            expect = None
            if cluster is not None:
                need(pk in cluster, "origin not in the cluster file")
                expect = cluster[pk]
            n, head = walk(pk, log.pop(idx, []), expect)
            if n != row["head_seq"]:
                raise Bad("seq %d: %s" % (n + 1, "record missing (the head says more were stored)"
                          if n < row["head_seq"] else "records stored past the recorded head"))
            need(n == 0 or head == row["head_hash"],
                 "seq %d: the stored head hash does not match the head record" % n)
        except Bad as why:
            raise Bad("origin %s %s" % (name, why))
        total += n
    need(not log, "log records of an origin index with no origin")
    return total, len(index)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the node's data directory (holds db/)")
    ap.add_argument("--cluster", help="the federation's cluster file: the trusted origin keys")
    ap.add_argument("--origin", action="append", help="a trusted origin key (hex or key file)")
    a = ap.parse_args(argv)
    try:
        cluster = read_cluster(a.cluster) if a.cluster else None
        origins = {read_key(k) for k in a.origin} if a.origin else None
        records, n = verify_node(a.data, cluster, origins)
    except (Bad, OSError) as why:
        print("FAILED: %s" % why)
        return 1
    anchor = ("anchored in the cluster file" if cluster else "anchored in the keys given"
              if origins else "origin keys as the database names them (not anchored)")
    print("ok: %d records of %d origins; every chain link and signature holds; %s"
          % (records, n, anchor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
