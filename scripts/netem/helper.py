#!/usr/bin/env python3
"""Small helpers for scripts/netem/run.sh: test data, JSON fields, the convergence check
and the report. Standard library only.

  helper.py field KEY                 print KEY of the JSON object on stdin
  helper.py ids                       print the "id" of each object of the JSON array on stdin
  helper.py visits N GRID LABEL       print a visits CSV of N rows
  helper.py tickets N GRID LABEL      print a tickets CSV of N rows
  helper.py check DIR                 compare DIR/expected.{visits,tickets} with every
                                      DIR/have/NODE.{visits,tickets}; print a JSON verdict
  helper.py row DIR                   print the report row of the configuration in DIR
"""

import csv
import glob
import json
import os
import sys

HOUSEHOLDS = ["和平里", "安贞里", "青年路", "小关东街"]
CATEGORIES = [
    "resident-services", "poverty-relief", "co-governance", "city-management",
    "dispute-mediation", "policy-consultation", "information",
]
RESIDENTS = ["张秀英", "王建国", "李淑珍", "刘德华", "陈静", "杨帆", "赵丽"]
NEEDS = ["冬季取暖补贴", "助餐服务", "上门体检", "楼道照明", "无障碍坡道", "法律咨询"]


def visits(n, grid, label):
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["household", "grid", "category", "note", "residents", "needs", "visited_at"])
    for i in range(n):
        w.writerow([
            f"{HOUSEHOLDS[i % 4]} {i // 40 + 1}-{i % 6 + 1}-{100 + i % 40} ({label})",
            grid,
            CATEGORIES[i % 7],
            f"{label} 第{i + 1}次走访：老人独居，行动不便，已登记需求。",
            json.dumps(RESIDENTS[i % 7: i % 7 + 1 + i % 2], ensure_ascii=False),
            NEEDS[i % 6],
            f"2026-11-{1 + i % 28:02d}T{8 + i % 10:02d}:{i % 60:02d}:00+08:00",
        ])


def tickets(n, grid, label):
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["title", "category", "priority", "household", "grid", "note", "opened_at"])
    for i in range(n):
        w.writerow([
            f"{label} 工单{i + 1}：楼道灯坏了",
            CATEGORIES[(i + 3) % 7],
            ["low", "normal", "high", "urgent"][i % 4],
            f"{HOUSEHOLDS[i % 4]} {i % 9 + 1} 号楼",
            grid,
            "已报物业维修",
            f"2026-11-{1 + i % 28:02d}T{9 + i % 9:02d}:{i % 60:02d}:00+08:00",
        ])


def read_ids(path):
    with open(path) as f:
        return {line.strip() for line in f if line.strip()}


def check(d):
    verdict = {"nodes": {}, "lost": 0, "extra": 0, "converged": True}
    missing_anywhere = set()
    for kind in ("visits", "tickets"):
        expected = read_ids(os.path.join(d, f"expected.{kind}"))
        verdict[f"expected_{kind}"] = len(expected)
        for path in sorted(glob.glob(os.path.join(d, "have", f"*.{kind}"))):
            node = os.path.basename(path).rsplit(".", 1)[0]
            have = read_ids(path)
            missing, extra = expected - have, have - expected
            n = verdict["nodes"].setdefault(node, {"missing": 0, "extra": 0})
            n["missing"] += len(missing)
            n["extra"] += len(extra)
            missing_anywhere |= {(kind, i) for i in missing}
            verdict["extra"] += len(extra)
    verdict["lost"] = len(missing_anywhere)
    verdict["converged"] = verdict["lost"] == 0 and verdict["extra"] == 0
    print(json.dumps(verdict))


def kb(n):
    return f"{n / 1024:,.0f} KiB" if n < 10 * 1024 * 1024 else f"{n / 1048576:,.1f} MiB"


def lap_attempts(d, lap):
    """A laptop's sync attempts, in words."""
    words = []
    for line in open(os.path.join(d, f"lap{lap}.attempts")):
        status, secs, rest = line.rstrip("\n").split("\t", 2)
        if status == "ok":
            r = json.loads(rest)
            words.append(f"ok in {float(secs):.1f} s, {r['sent']} changes sent")
        else:
            words.append(f"failed after {float(secs):.1f} s ({rest})")
    return "; ".join(words)


def row(d):
    """One line of the report's table, from the files run.sh left in d."""
    meta = json.load(open(os.path.join(d, "meta.json")))
    verdict = json.load(open(os.path.join(d, "verdict.json")))
    attempts = failed = sent = received = changes_sent = 0
    slowest = 0.0
    errors = {}
    for path in sorted(glob.glob(os.path.join(d, "lap*.attempts"))):
        for line in open(path):
            status, secs, rest = line.rstrip("\n").split("\t", 2)
            attempts += 1
            if status == "ok":
                slowest = max(slowest, float(secs))
                r = json.loads(rest)
                sent += r["bytes_sent"]
                received += r["bytes_received"]
                changes_sent += r["sent"]
            else:
                failed += 1
                errors[rest] = errors.get(rest, 0) + 1
    wire = packets = dropped = dups = 0
    partition = ""
    for path in sorted(glob.glob(os.path.join(d, "wire*.json"))):
        w = json.load(open(path))
        p = w.get("partition")
        if p:
            lap = os.path.basename(path)[len("wire"):-len(".json")]
            partition = (
                f"lap{lap}'s link "
                f"cut {p['cut_at_s']:.2f} s after its first packet, once it had put "
                f"{kb(p['cut_after_bytes'])} on it; restored at {p.get('restored_at_s', 0):.2f} s. "
                f"lap{lap}'s syncs: {lap_attempts(d, lap)}"
            )
        for way in ("up", "down"):
            wire += w[way]["bytes"]
            packets += w[way]["packets"]
            dropped += w[way]["lost"] + w[way]["cut"]
            dups += w[way]["duplicated"]
    conv = meta.get("converged_s")
    records = verdict["expected_visits"] + verdict["expected_tickets"]
    ok = verdict["converged"] and meta["verify_bad"] == 0
    cells = [
        meta["config"],
        meta["link"],
        f"{records:,}",
        f"{conv:.1f}" if conv is not None else f"not in {meta['timeout_s']} s",
        str(meta["rounds"]),
        f"{attempts} ({failed})",
        f"{slowest:.1f}",
        kb(sent),
        kb(received),
        f"{kb(wire)} / {packets:,} pkts",
        f"{dropped:,} / {dups:,}",
        str(verdict["lost"]),
        "ok" if meta["verify_bad"] == 0 else f"{meta['verify_bad']} bad",
    ]
    out = {"cells": cells, "ok": ok, "errors": errors, "changes_sent": changes_sent,
           "partition": partition}
    print(json.dumps(out, ensure_ascii=False))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "field":
        v = json.load(sys.stdin)[args[0]]
        print("" if v is None else v)
    elif cmd == "ids":
        for o in json.load(sys.stdin):
            print(o["id"])
    elif cmd == "visits":
        visits(int(args[0]), args[1], args[2])
    elif cmd == "tickets":
        tickets(int(args[0]), args[1], args[2])
    elif cmd == "check":
        check(args[0])
    elif cmd == "row":
        row(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
