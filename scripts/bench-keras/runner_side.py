"""The benchmark's matrix through `runner sweep`, timed, in three set-ups:

  no-cache  a fresh results directory, --no-cache (every image decoded each epoch, the full
            network run: the notebook's way);
  cold      a fresh results directory, the caches on (the default);
  warm      the cold set-up's results directory again, with --force (decoded images and frozen
            features come from results/.cache).

    python runner_side.py --runner BIN --experiment FILE.toml --work DIR --json OUT.json
                          [--device cpu] [--setups no-cache,cold,warm]

Each group of variants is its own `runner sweep FILE --variant V...` process (all seeds), one
after the other, in the set-up's results directory, so that its wall and CPU seconds (user +
system, all threads, from wait4) and peak resident memory are measured directly; a set-up's total
is their sum, and so includes each process's start (loading and hashing data and weights). The
groups: fine_tuning, then feature_extraction (whose frozen prefix extends fine-tuning's, so from
warm caches it starts from fine-tuning's block4_pool outputs), then the two augmented variants in
one process, where they train in lockstep (blocks 1 to 4 once per batch for both), as they do in
one `runner sweep` of the whole matrix. Any failure stops the benchmark with the process's log.
"""

import argparse
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import time

# Row name -> the variants its process runs (table.py has the same rows).
GROUPS = {
    "fine_tuning": ["fine_tuning"],
    "feature_extraction": ["feature_extraction"],
    "feature_extraction_aug + fine_tuning_aug": ["feature_extraction_aug", "fine_tuning_aug"],
}


def timed(cmd, log):
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log, errors="replace") as f:
            tail = f.read()[-4000:]
        sys.exit(f"runner_side.py: `{' '.join(cmd)}` exited {proc.returncode}; its log ({log}):\n{tail}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
    }


def final_val_acc(results, name, variant):
    accs = []
    for path in sorted(glob.glob(os.path.join(results, "*", name, variant, "seed-*", "metrics.csv"))):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        accs.append(float(rows[-1]["val_acc"]))
    return accs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runner", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--name", required=True, help="the experiment's name (its results folder)")
    p.add_argument("--work", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--setups", default="no-cache,cold,warm")
    a = p.parse_args()
    logs = os.path.join(a.work, "logs")
    os.makedirs(logs, exist_ok=True)
    out = {"device": a.device, "setups": {}}
    for setup in a.setups.split(","):
        if setup not in ("no-cache", "cold", "warm"):
            sys.exit(f"runner_side.py: unknown set-up {setup!r} (no-cache, cold, warm)")
        results = os.path.join(a.work, "results-no-cache" if setup == "no-cache" else "results-cached")
        flags = ["--no-report", "--device", a.device]
        if setup == "no-cache":
            flags.append("--no-cache")
        if setup == "warm":
            if not os.path.isdir(results):
                sys.exit("runner_side.py: the warm set-up reruns the cold one's results: run cold first")
            flags.append("--force")
        else:
            shutil.rmtree(results, ignore_errors=True)
        rows = {}
        for group, variants in GROUPS.items():
            selected = [arg for v in variants for arg in ("--variant", v)]
            cmd = [a.runner, "sweep", a.experiment, "--results", results, *selected, *flags]
            print(f"runner: {setup} {group}", file=sys.stderr, flush=True)
            row = timed(cmd, os.path.join(logs, f"{setup}-{'+'.join(variants)}.log"))
            row["val_acc"] = {v: final_val_acc(results, a.name, v) for v in variants}
            rows[group] = row
        out["setups"][setup] = {
            "variants": rows,
            "total": {
                "wall": sum(r["wall"] for r in rows.values()),
                "cpu": sum(r["cpu"] for r in rows.values()),
                "peak_mib": max(r["peak_mib"] for r in rows.values()),
            },
        }
    tmp = a.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
