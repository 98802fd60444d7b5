#!/usr/bin/env bash
# Regenerates the demo table of README.md: runs the embedded demo (release build) into a fresh
# results directory and prints each variant's final val_acc per seed, their mean, and the
# pretraining stage's final val_acc. On any x86-64 CPU with AVX2 and FMA the numbers are the
# same bits (see README, "Reproducibility"), so this prints the README's table.
#
#   scripts/demo-table.sh            # print the table
#   scripts/demo-table.sh --check    # exit 1 when README.md's table differs from it
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
cargo build --release --quiet
target/release/runner sweep --results "$results" --no-report --quiet >/dev/null
state=$(find "$results" -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name datasets)
final_acc() { tail -n 1 "$1" | cut -d, -f5; }
table=$(
  echo "| variant | seed 0 | seed 1 | mean |"
  echo "|---|---|---|---|"
  for v in $(ls "$state/demo" | grep -v '^report$' | grep -v '^\.' | sort); do
    a=$(final_acc "$state/demo/$v/seed-0/metrics.csv")
    b=$(final_acc "$state/demo/$v/seed-1/metrics.csv")
    label=$v
    [ "$v" = baseline_random ] && label="baseline_random (random frozen base)"
    awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN { printf "| %s | %.3f | %.3f | %.3f |\n", l, a, b, (a + b) / 2 }'
  done
)
stage=$(final_acc "$(find "$state/.stages" -name metrics.csv | head -n 1)")
if [ "${1:-}" = "--check" ]; then
  if [[ "$(cat README.md)" == *"$table"* ]]; then
    echo "README.md's demo table matches this machine's run"
  else
    echo "README.md's demo table differs from this machine's run:"
    echo "$table"
    exit 1
  fi
else
  echo "$table"
  printf 'pretraining stage: final val_acc %.3f\n' "$stage"
fi
