"""Reads a sweep's TensorBoard event files with TensorBoard's own reader and checks them against
each cell's metrics.csv and run.json.

    python read_tensorboard.py EXPERIMENT_DIR CELL_DIR...

EXPERIMENT_DIR is `results/<code-state>/<experiment>`: loaded as `tensorboard --logdir` would,
every CELL_DIR must be a run named by its path under it (`<variant>/seed-<n>`). For each cell,
every tag has one event per epoch (step = epoch, no step twice) whose value is the metrics.csv
value as a float32. Prints one line per cell; exits 1 on the first difference.
"""

import csv
import json
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator, event_multiplexer

COLUMNS = {
    "loss": "train_loss",
    "accuracy": "train_acc",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
    "seconds": "seconds",
}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_cell(cell):
    with open(os.path.join(cell, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(cell, "run.json")) as f:
        record = json.load(f)
    lr = record["config"]["training"]["optimizer"]["learning_rate"]
    # purge_orphaned_data=False: a repeated step is kept (and caught below), not silently dropped.
    acc = event_accumulator.EventAccumulator(cell, purge_orphaned_data=False)
    acc.Reload()
    tags = sorted(acc.Tags()["scalars"])
    want = sorted(list(COLUMNS) + ["learning_rate"])
    if tags != want:
        fail(f"{cell}: scalar tags {tags}, expected {want}")
    for tag in tags:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        epochs = [int(r["epoch"]) for r in rows]
        if steps != epochs:
            fail(f"{cell}: tag {tag} has steps {steps}, metrics.csv epochs {epochs}")
        for e, r in zip(events, rows):
            expected = f32(lr) if tag == "learning_rate" else f32(r[COLUMNS[tag]])
            if e.value != expected:
                fail(f"{cell}: {tag} step {e.step} is {e.value}, metrics.csv says {expected}")
    walls = [e.wall_time for e in acc.Scalars("loss")]
    if walls != sorted(walls):
        fail(f"{cell}: wall times go backwards: {walls}")
    print(f"ok {cell}: {len(rows)} steps x {len(tags)} tags")


def main():
    logdir, cells = sys.argv[1], sys.argv[2:]
    mux = event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    runs = sorted(mux.Runs())
    expected_runs = sorted(os.path.relpath(c, logdir) for c in cells)
    for run in expected_runs:
        if run not in runs:
            fail(f"run {run} not found by TensorBoard under {logdir}; runs: {runs}")
    print("runs: " + ", ".join(runs))
    for cell in cells:
        check_cell(cell)


if __name__ == "__main__":
    main()
