"""An independent recount of aggregates from the records themselves
(`appeal-node log`), folding the events with its own reading of the
lifecycle rules, to check the node's aggregate tables against."""

import json
import statistics
import subprocess

OPEN = {"registered", "assigned", "extended", "reopened", "forwarded"}
IN_WORK = {"registered", "assigned", "extended", "reopened"}
ALLOWED = {
    "assigned": IN_WORK, "extended": IN_WORK, "forwarded": IN_WORK, "answered": IN_WORK,
    "withdrawn": IN_WORK, "accepted": {"forwarded"}, "returned": {"forwarded"},
    "closed": {"answered"}, "reopened": {"answered", "closed"},
    "rated": {"answered", "closed"},
}


def records(node_bin, data_dir):
    out = subprocess.run([node_bin, "log", "--data", data_dir], capture_output=True, text=True,
                         check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def fold(recs):
    """{number: appeal state} from the records, whatever their order."""
    appeals, events = {}, {}
    for r in recs:
        if r["kind"] == "filed":
            appeals[r["number"]] = {
                "type": r["type"], "category": r["category"],
                # an office's appeals count under its region (REGION.KATO)
                "region": r["jurisdiction"].split(".")[0], "office": r["jurisdiction"],
                "owner": r["jurisdiction"], "status": "registered",
                "registered_day": r["registered_day"], "deadline_day": r["deadline_day"],
                "first_answered_day": 0, "in_term": False, "forwarded_to": "", "before": None,
                "version": 0, "rating": None}
        elif "number" in r:
            events.setdefault(r["number"], []).append(r)
    for number, evs in events.items():
        a = appeals.get(number)
        for r in sorted(evs, key=lambda r: r["version"]):
            if a is None or r["version"] != a["version"] + 1:
                continue
            may = a["forwarded_to"] if a["status"] == "forwarded" else a["owner"]
            if r["origin"] != may or a["status"] not in ALLOWED.get(r["kind"], set()):
                continue
            k = r["kind"]
            if k == "assigned":
                a["status"] = "extended" if a["status"] == "extended" else "assigned"
            elif k == "extended":
                a["status"], a["deadline_day"] = "extended", r["until_day"]
            elif k == "forwarded":
                a["before"], a["status"], a["forwarded_to"] = a["status"], "forwarded", r["to"]
            elif k == "accepted":
                a["owner"], a["forwarded_to"], a["status"] = a["forwarded_to"], "", "registered"
                a["deadline_day"] = r["deadline_day"]
            elif k == "returned":
                a["status"], a["forwarded_to"] = a["before"], ""
            elif k == "answered":
                if a["first_answered_day"] == 0:
                    a["first_answered_day"] = r["answered_day"]
                    a["in_term"] = r["answered_day"] <= a["deadline_day"]
                a["status"] = "answered"
            elif k == "closed":
                a["status"] = "closed"
            elif k == "reopened":
                a["status"], a["deadline_day"] = "reopened", r["deadline_day"]
            elif k == "withdrawn":
                a["status"] = "withdrawn"
            elif k == "rated":
                if a["rating"] is not None:
                    continue  # the first rating counts
                a["rating"] = r["rating"]  # the status stays
            a["version"] += 1
    return appeals


def day_str(day):
    import datetime
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def key_of(a, by, today):
    out = []
    for f in by:
        if f == "region":  # an office's appeals count under its region
            out.append(a["region"])
        elif f in ("owner", "office"):  # office: the receiving jurisdiction itself
            out.append(a[f])
        elif f in ("type", "category", "status"):
            out.append(a[f])
        elif f == "section":
            out.append(a["category"][:4])
        elif f == "day":
            out.append(day_str(a["registered_day"]))
        elif f == "month":
            out.append(day_str(a["registered_day"])[:7])
        elif f == "year":
            out.append(day_str(a["registered_day"])[:4])
        elif f == "is_overdue":
            out.append("yes" if overdue(a, today) else "no")
    return tuple(out)


def overdue(a, today):
    return a["status"] in OPEN and today > a["deadline_day"]


def aggregate(appeals, by, today, keep=lambda a: True):
    """{group key: measures} as `appealctl stats --json` reports them."""
    groups = {}
    for a in appeals.values():
        if not keep(a):
            continue
        g = groups.setdefault(key_of(a, by, today), {
            "count": 0, "open": 0, "overdue": 0, "answered": 0, "answered_in_term": 0,
            "rated": 0, "satisfied": 0, "days": []})
        g["count"] += 1
        g["open"] += a["status"] in OPEN
        g["overdue"] += overdue(a, today)
        if a["rating"] is not None:
            g["rated"] += 1
            g["satisfied"] += a["rating"] == "satisfied"
        if a["first_answered_day"]:
            g["answered"] += 1
            g["answered_in_term"] += a["in_term"]
            g["days"].append(a["first_answered_day"] - a["registered_day"])
    out = {}
    for k, g in groups.items():
        days = g.pop("days")
        g["median_days_to_answer"] = statistics.median(days) if days else None
        # as the node prints it (6 significant digits)
        sat = g.pop("satisfied")
        g["share_satisfied"] = float(f"{sat / g['rated']:.6g}") if g["rated"] else 0
        out[k] = g
    return out


def from_stats(stats, by):
    """The same shape from `appealctl stats --json`."""
    out = {}
    for g in stats["groups"]:
        out[tuple(g[f] for f in by)] = {
            k: g[k] for k in ("count", "open", "overdue", "answered", "answered_in_term",
                              "median_days_to_answer", "rated", "share_satisfied")}
    return out
