"""The benchmark's table from notebook.py's and runner_side.py's JSON: per variant and in total,
wall and CPU seconds for Keras and for `runner sweep` without caches, from cold caches and on warm
caches, and the ratios Keras / runner (above 1: runner is faster). Prints it with the machine and
the versions, and writes OUT_DIR/table.md and OUT_DIR/table.csv.

    python table.py --out-dir DIR [--keras keras.json] [--runner runner.json] [--note TEXT]...
"""

import argparse
import csv
import json
import os

VARIANTS = ["feature_extraction", "feature_extraction_aug", "fine_tuning", "fine_tuning_aug"]
# The table's rows: runner_side.py's processes, each compared with the same variants in Keras.
GROUPS = {
    "fine_tuning": ["fine_tuning"],
    "feature_extraction": ["feature_extraction"],
    "feature_extraction_aug + fine_tuning_aug": ["feature_extraction_aug", "fine_tuning_aug"],
}
SETUPS = ["no-cache", "cold", "warm"]


def machine():
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    ext = ", ".join(
        f"{name} {'yes' if any(f in flags for f in names) else 'no'}"
        for name, names in (("avx2", ["avx2"]), ("avx512f", ["avx512f"]), ("amx", ["amx_tile"]))
    )
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f", {kib / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} CPUs{mem}; {ext}"


def load(path):
    if path and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


def ratio(k, r):
    return "-" if k is None or r is None or r == 0 else f"{k / r:.2f}x"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", required=True)
    p.add_argument("--keras")
    p.add_argument("--runner")
    p.add_argument("--note", action="append", default=[])
    a = p.parse_args()
    keras, runner = load(a.keras), load(a.runner)

    def keras_cell(row, what):
        if keras is None:
            return None
        if row == "total":
            return keras["total"][what]
        if row == "import":
            return keras["import"][what]
        return sum(keras["variants"][v][what] for v in GROUPS[row])

    def runner_cell(setup, row, what):
        if runner is None or setup not in runner["setups"]:
            return None
        s = runner["setups"][setup]
        if row == "total":
            return s["total"][what]
        if row == "import":
            return None
        return s["variants"][row][what]

    header = ["variant", "Keras s", "Keras CPU-s"]
    for s in SETUPS:
        header += [f"runner {s} s", f"{s} CPU-s"]
    header += [f"Keras / {s} (wall, CPU)" for s in SETUPS]
    csv_header = ["variant", "keras_s", "keras_cpu_s"]
    for s in SETUPS:
        csv_header += [f"runner_{s}_s", f"runner_{s}_cpu_s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    labels = {"import": "TensorFlow import (Keras only)", "total": "**total**"}
    for row in list(GROUPS) + (["import"] if keras else []) + ["total"]:
        kw, kc = keras_cell(row, "wall"), keras_cell(row, "cpu")
        cells = [labels.get(row, row), fmt(kw), fmt(kc)]
        values = [row, kw, kc]
        ratios = []
        for s in SETUPS:
            rw, rc = runner_cell(s, row, "wall"), runner_cell(s, row, "cpu")
            cells += [fmt(rw), fmt(rc)]
            values += [rw, rc]
            ratios.append("-" if row == "import" else f"{ratio(kw, rw)}, {ratio(kc, rc)}")
        lines.append("| " + " | ".join(cells + ratios) + " |")
        rows.append(["" if v is None else (f"{v:.3f}" if isinstance(v, float) else v) for v in values])

    info = [f"Machine: {machine()}."]
    if keras:
        info.append(
            f"Keras: TensorFlow {keras['tensorflow']} / Keras {keras['keras']} (tensorflow-cpu), "
            f"default thread pools; peak memory {keras['peak_mib']:.0f} MiB."
        )
    if runner:
        peaks = ", ".join(
            f"{s} {runner['setups'][s]['total']['peak_mib']:.0f}" for s in SETUPS if s in runner["setups"]
        )
        info.append(f"runner (--device {runner['device']}): peak memory of the largest process, MiB: {peaks}.")
        for s in SETUPS:
            if s in runner["setups"]:
                per_row = ", ".join(
                    f"{g} {runner['setups'][s]['variants'][g]['peak_mib']:.0f}" for g in GROUPS
                )
                info.append(f"runner {s}: peak memory per process, MiB: {per_row}.")
    accs = []
    for v in VARIANTS:
        part = []
        if keras:
            part.append("Keras " + "/".join(f"{x:.2f}" for x in keras["variants"][v]["val_acc"]))
        if runner:
            for s in SETUPS:
                if s in runner["setups"]:
                    group = next(g for g, vs in GROUPS.items() if v in vs)
                    accs_of = runner["setups"][s]["variants"][group]["val_acc"][v]
                    part.append(f"{s} " + "/".join(f"{x:.2f}" for x in accs_of))
        accs.append(f"{v}: {', '.join(part)}")
    info.append("Final val_acc per seed (random weights, so only a sanity check): " + "; ".join(accs) + ".")
    info += a.note
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {line}" for line in info) + "\n"
    os.makedirs(a.out_dir, exist_ok=True)
    for name, body in (("table.md", text), ("table.csv", None)):
        path = os.path.join(a.out_dir, name)
        with open(path + ".tmp", "w", newline="") as f:
            if body is not None:
                f.write(body)
            else:
                w = csv.writer(f)
                w.writerow(csv_header)
                w.writerows(rows)
        os.replace(path + ".tmp", path)
    print(text, end="")


if __name__ == "__main__":
    main()
