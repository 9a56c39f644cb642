#!/usr/bin/env python3
"""The watchdog benchmark's analysis (e2e/bench/watchdog.sh): which edit the daemon
detected when, which it healed, what `idp-lab watch` showed, and whether the live
objects are back to what idp-lab set.

usage: analyse.py DIR DETECT_TIMEOUT_S

DIR holds what watchdog.sh wrote:
  edits.tsv     one edit per line: index, object, value sent, EPOCHREALTIME before curl,
                curl's time_pretransfer and time_total (s), HTTP code
  history.json  `idp-lab history -o json` after the edits (every event the daemon kept)
  watch.tsv     `idp-lab watch -o json`, one line per event: EPOCHREALTIME of arrival, TAB,
                the event
  live.json     the ConfigMap and Secret lists of the namespace after the edits
  desired.json  {"configmaps": {name: value}, "secrets": {name: base64}} as applied

An edit's *send time* is when curl was about to send the PATCH (the time before curl plus
curl's time_pretransfer: after its TCP and TLS set-up), on the host's CLOCK_REALTIME. Its
detection is the first `detected` drift event of that object whose field `data.value` has
the edit's value live; *detection latency* is that event's `detected_at` (the daemon's
SystemTime after its dry-run diff, the same clock) minus the send time. An edit with no
such event within DETECT_TIMEOUT_S is missed. Its heal is the first `healed` event of the
object after the detection (`detected_at` of a healed event is when the re-apply returned).

Prints `key=value` lines on stdout for the script, and notes on stderr.
"""

import calendar
import json
import re
import sys
from pathlib import Path

RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339(text):
    """RFC 3339 text as Unix seconds (float), nanoseconds kept as far as a float does."""
    m = RFC3339.match(text)
    if not m:
        raise ValueError(f"not RFC 3339: {text!r}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs + (int(frac) / 10 ** len(frac) if frac else 0.0)


def percentile(sorted_values, p):
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    out = Path(sys.argv[1])
    timeout = float(sys.argv[2])
    edits = []
    for line in (out / "edits.tsv").read_text().splitlines():
        i, name, value, before, pre, total, code = line.split("\t")
        before = float(before)
        edits.append(
            {"i": int(i), "name": name, "value": value, "sent": before + float(pre), "returned": before + float(total), "code": code}
        )
    history = json.loads((out / "history.json").read_text())
    watched = []
    watch_file = out / "watch.tsv"
    bad_watch_lines = 0
    for line in watch_file.read_text().splitlines() if watch_file.exists() else []:
        arrival, _, text = line.partition("\t")
        try:
            watched.append((float(arrival), json.loads(text)))
        except ValueError:
            bad_watch_lines += 1
    desired = json.loads((out / "desired.json").read_text())
    live = json.loads((out / "live.json").read_text())

    drift = [e for e in history if e.get("kind") == "drift"]
    by_event = {}
    for e in drift:
        by_event.setdefault(e["body"].get("event", "?"), []).append(e)

    def key(e):
        return json.dumps(e, sort_keys=True)

    watch_arrival = {}
    for arrival, e in watched:
        watch_arrival.setdefault(key(e), arrival)

    def has_live(e, value):
        return any(f.get("path") == "data.value" and f.get("live") == value for f in e["body"].get("fields", []))

    detected = sorted(by_event.get("detected", []), key=lambda e: rfc3339(e["body"]["detected_at"]))
    healed = sorted(by_event.get("healed", []), key=lambda e: rfc3339(e["body"]["detected_at"]))
    used = set()
    lat, lat_returned, lat_watch, lat_heal, managers = [], [], [], [], {}
    missed, late, unhealed_events = [], [], []
    for ed in edits:
        found = next((e for e in detected if e["body"].get("name") == ed["name"] and has_live(e, ed["value"])), None)
        if found is None:
            missed.append(ed)
            continue
        used.add(key(found))
        at = rfc3339(found["body"]["detected_at"])
        ms = (at - ed["sent"]) * 1000
        if ms > timeout * 1000:
            late.append((ed, ms))
            missed.append(ed)
            continue
        lat.append(ms)
        lat_returned.append((at - ed["returned"]) * 1000)
        managers[found["body"].get("manager")] = managers.get(found["body"].get("manager"), 0) + 1
        if key(found) in watch_arrival:
            lat_watch.append((watch_arrival[key(found)] - ed["sent"]) * 1000)
        heal = next((h for h in healed if h["body"].get("name") == ed["name"] and rfc3339(h["body"]["detected_at"]) >= at), None)
        if heal is None:
            unhealed_events.append(ed)
        else:
            lat_heal.append((rfc3339(heal["body"]["detected_at"]) - ed["sent"]) * 1000)

    # What is live now against what idp-lab set.
    live_cm = {o["metadata"]["name"]: (o.get("data") or {}).get("value") for o in live["configmaps"]["items"]}
    live_secret = {o["metadata"]["name"]: (o.get("data") or {}).get("value") for o in live["secrets"]["items"]}
    wrong = [n for n, v in desired["configmaps"].items() if live_cm.get(n) != v]
    wrong += [n for n, v in desired["secrets"].items() if live_secret.get(n) != v]
    edited_wrong = sorted({ed["name"] for ed in edits} & set(wrong))

    # From the first edit on (the probe before it is the script's, and watch started later).
    first = min(ed["sent"] for ed in edits)
    other_detected = [e for e in detected if key(e) not in used and rfc3339(e["body"]["detected_at"]) >= first]
    watch_lost = [e for e in drift if key(e) not in watch_arrival and rfc3339(e["body"]["detected_at"]) >= first]

    lat.sort()
    lat_returned.sort()
    lat_watch.sort()
    lat_heal.sort()
    res = {
        "edits": len(edits),
        "detected": len(lat),
        "missed": len(missed),
        "late": len(late),
        "p50_ms": fmt(percentile(lat, 50)),
        "p99_ms": fmt(percentile(lat, 99)),
        "max_ms": fmt(lat[-1] if lat else None),
        "p50_returned_ms": fmt(percentile(lat_returned, 50)),
        "p99_returned_ms": fmt(percentile(lat_returned, 99)),
        "watch_p50_ms": fmt(percentile(lat_watch, 50)),
        "watch_p99_ms": fmt(percentile(lat_watch, 99)),
        "heal_p50_ms": fmt(percentile(lat_heal, 50)),
        "heal_p99_ms": fmt(percentile(lat_heal, 99)),
        "healed_events": len(lat_heal),
        "unhealed_events": len(unhealed_events),
        "live_wrong": len(wrong),
        "edited_live_wrong": len(edited_wrong),
        "other_detected": len(other_detected),
        "heal_failed": len(by_event.get("heal_failed", [])),
        "contested": len(by_event.get("contested", [])),
        "failed": len(by_event.get("failed", [])),
        "watch_lines": len(watched),
        "watch_lost": len(watch_lost),
        "managers": ",".join(f"{m}:{n}" for m, n in sorted(managers.items(), key=str)),
    }
    for k, v in res.items():
        print(f"{k}={v}")
    for ed in missed[:10]:
        print(f"  missed: edit {ed['i']} of {ed['name']} to {ed['value']}", file=sys.stderr)
    for ed, ms in late[:10]:
        print(f"  late: edit {ed['i']} of {ed['name']} detected after {ms:.0f} ms", file=sys.stderr)
    for e in other_detected[:10]:
        print(f"  a detection matching no edit: {json.dumps(e['body'])[:400]}", file=sys.stderr)
    for n in wrong[:10]:
        print(f"  not what idp-lab set, live: {n}", file=sys.stderr)
    if bad_watch_lines:
        print(f"  {bad_watch_lines} line(s) of idp-lab watch were not JSON", file=sys.stderr)


if __name__ == "__main__":
    main()
