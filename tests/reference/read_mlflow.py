"""Reads the runs `runner export mlflow` made back through MLflow's own Python client and checks
them against the cells on disk.

    python read_mlflow.py TRACKING_URI EXPERIMENT CELL_DIR...

The MLflow experiment must hold exactly one run per CELL_DIR (no duplicates), found by its
`runner.run_key` tag, with: the run status of the cell's status; params = run.json's `config`
flattened to dotted keys; one metric history per scalar whose steps are metrics.csv's epochs
(each once) and whose values are metrics.csv's (`seconds`: measured, not compared); the tags; and metrics.csv and run.json as
artifacts, byte for byte. Prints one line per run; exits 1 on the first difference.
"""

import csv
import json
import os
import sys
import tempfile

from mlflow.tracking import MlflowClient

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
    if run.info.status != STATUS[record["status"]]:
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
    if names != ["metrics.csv", "run.json"]:
        fail(f"{cell}: artifacts {names}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = client.download_artifacts(run.info.run_id, name, tmp)
            with open(path, "rb") as a, open(os.path.join(cell, name), "rb") as b:
                if a.read() != b.read():
                    fail(f"{cell}: artifact {name} differs from the file")
    print(f"ok {run.info.run_name} {run.info.status}: {len(rows)} epochs, {len(params)} params")


def main():
    uri, experiment, cells = sys.argv[1], sys.argv[2], sys.argv[3:]
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
