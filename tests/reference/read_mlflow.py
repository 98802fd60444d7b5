"""Reads the runs `runner export mlflow` made back through MLflow's own Python client and checks
them against the cells on disk.

    python read_mlflow.py [--report DIR] [--live] TRACKING_URI EXPERIMENT CELL_DIR...

The MLflow experiment must hold exactly one run per CELL_DIR (no duplicates), found by its
`runner.run_key` tag, with: the run status of the cell's status; params = run.json's `config`
flattened to dotted keys; one metric history per scalar whose steps are metrics.csv's epochs
(each once) and whose values are metrics.csv's (`seconds`: measured, not compared); the tags; and metrics.csv and run.json as
artifacts, byte for byte. Prints one line per run; exits 1 on the first difference.

--report DIR: each run also has the files of the report folder DIR (report.html, report.md,
summary.csv) as artifacts under report/, byte for byte. --live: the cells are still training (a
sweep logging as it goes was killed): the runs are RUNNING, have no artifacts yet, and each
history holds metrics.csv's epochs but perhaps the last (the sweep may have been killed between
writing metrics.csv and logging), at least one.
"""

import csv
import json
import os
import sys
import tempfile

from mlflow.tracking import MlflowClient

REPORT_FILES = ["report.html", "report.md", "summary.csv"]
OPTIONS = {"report": None, "live": False}

COLUMNS = {
    "loss": "train_loss",
    "accuracy": "train_acc",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
    "seconds": "seconds",
}
STATUS = {
    "running": "RUNNING",
    "done": "FINISHED",
    "failed": "FAILED",
    "diverged": "FAILED",
    "interrupted": "KILLED",
}


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def flatten(prefix, value, out):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def check(client, runs, cell):
    with open(os.path.join(cell, "run.json")) as f:
        record = json.load(f)
    with open(os.path.join(cell, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    key = record["run_key"]
    mine = [r for r in runs if r.data.tags.get("runner.run_key") == key]
    if len(mine) != 1:
        fail(f"{cell}: {len(mine)} MLflow runs with runner.run_key {key}, expected 1")
    run = mine[0]
    if OPTIONS["live"]:
        if run.info.status != "RUNNING" or record["status"] != "running":
            fail(f"{cell}: run status {run.info.status}, cell status {record['status']}")
    elif run.info.status != STATUS[record["status"]]:
        fail(f"{cell}: run status {run.info.status}, cell status {record['status']}")
    if run.info.run_name != f"{record['variant']}/seed-{record['seed']}":
        fail(f"{cell}: run name {run.info.run_name}")
    expected = {}
    flatten("", record["config"], expected)
    params = run.data.params
    if sorted(params) != sorted(expected):
        fail(f"{cell}: params {sorted(params)}, expected {sorted(expected)}")
    for k, v in expected.items():
        got = params[k] if isinstance(v, str) else json.loads(params[k])
        if got != v:
            fail(f"{cell}: param {k} = {params[k]!r}, run.json says {v!r}")
    tags = run.data.tags
    want_tags = {
        "runner.variant": record["variant"],
        "runner.seed": str(record["seed"]),
        "runner.status": record["status"],
        "runner.device": record["device"],
        "runner.code_state": record["code_state"],
        "runner.experiment": record["experiment"],
    }
    commit = (record.get("provenance") or {}).get("commit")
    if commit:
        want_tags["runner.commit"] = commit
    for k, v in want_tags.items():
        if tags.get(k) != v:
            fail(f"{cell}: tag {k} = {tags.get(k)!r}, expected {v!r}")
    lr = record["config"]["training"]["optimizer"]["learning_rate"]
    epochs = [int(r["epoch"]) for r in rows]
    if OPTIONS["live"]:
        logged = len(client.get_metric_history(run.info.run_id, "loss"))
        if logged < max(1, len(rows) - 1):
            fail(f"{cell}: {logged} epochs logged while running, metrics.csv has {len(rows)}")
        rows = rows[:logged]
        epochs = epochs[:logged]
    for metric in list(COLUMNS) + ["learning_rate"]:
        history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        steps = [m.step for m in history]
        if steps != epochs:
            fail(f"{cell}: {metric} has steps {steps}, metrics.csv epochs {epochs}")
        if metric == "seconds":
            # Wall-clock time: a cell that trained an epoch again after a crash measured it
            # again, and MLflow keeps the value it logged first (histories are append-only).
            if any(m.value <= 0 for m in history):
                fail(f"{cell}: seconds {[m.value for m in history]}")
            continue
        for m, r in zip(history, rows):
            want = lr if metric == "learning_rate" else float(r[COLUMNS[metric]])
            if m.value != want:
                fail(f"{cell}: {metric} step {m.step} = {m.value}, metrics.csv says {want}")
    names = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    want = {name: os.path.join(cell, name) for name in ["metrics.csv", "run.json"]}
    if OPTIONS["live"]:
        want = {}
    if OPTIONS["report"]:
        want["report"] = None
        inside = sorted(a.path for a in client.list_artifacts(run.info.run_id, "report"))
        if inside != [f"report/{n}" for n in REPORT_FILES]:
            fail(f"{cell}: report artifacts {inside}")
        for n in REPORT_FILES:
            want[f"report/{n}"] = os.path.join(OPTIONS["report"], n)
    if names != sorted(n for n in want if "/" not in n):
        fail(f"{cell}: artifacts {names}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, local in want.items():
            if local is None:
                continue
            path = client.download_artifacts(run.info.run_id, name, tmp)
            with open(path, "rb") as a, open(local, "rb") as b:
                if a.read() != b.read():
                    fail(f"{cell}: artifact {name} differs from {local}")
    print(f"ok {run.info.run_name} {run.info.status}: {len(rows)} epochs, {len(params)} params")


def main():
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--report":
            OPTIONS["report"] = args.pop(0)
        elif option == "--live":
            OPTIONS["live"] = True
        else:
            fail(f"unknown option {option}")
    uri, experiment, cells = args[0], args[1], args[2:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        fail(f"no MLflow experiment {experiment}")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    if len(runs) != len(cells):
        fail(f"{len(runs)} runs in experiment {experiment}, expected {len(cells)} (one per cell)")
    for cell in cells:
        check(client, runs, cell)


if __name__ == "__main__":
    main()
