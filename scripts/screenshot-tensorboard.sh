#!/usr/bin/env bash
# Start TensorBoard (from target/py-venv) on an experiment's results, open its scalars page in
# headless Chromium, check that the charts drew, and save a screenshot (the README's picture).
#
#   scripts/screenshot-tensorboard.sh [LOGDIR] [OUT.png] [WIDTH] [HEIGHT]
#
# LOGDIR: results/<code-state>/<experiment> (default: the newest results/*/demo; when there is
# none, the demo is swept into a scratch results directory with $RUNNER, default
# target/debug/runner). OUT defaults to docs/tensorboard.png; WIDTH x HEIGHT to 1280 x 800.
# Needs Chromium (Debian: apt-get install -y chromium; installed automatically when run as
# root) and python3 (scripts/py-venv.sh makes the environment). Exits 1, saying why, when
# TensorBoard does not start, the page draws no chart or fewer lines than runs, or the picture
# is blank (few colours) or over 300 KB.
# TensorBoard listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

logdir=${1:-}
out=${2:-docs/tensorboard.png}
width=${3:-1280}
height=${4:-800}
max_bytes=300000

die() { echo "error: $*" >&2; exit 1; }

tmp=$(mktemp -d)
tb_pid=
cleanup() {
    if [ -n "$tb_pid" ]; then kill "$tb_pid" 2>/dev/null || true; wait "$tb_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "$logdir" ]; then
    logdir=$(ls -dt results/*/demo 2>/dev/null | head -1 || true)
fi
if [ -z "$logdir" ]; then
    runner=${RUNNER:-target/debug/runner}
    [ -x "$runner" ] || die "no results/*/demo and no $runner: run \`runner sweep\` (the demo) first, or set RUNNER"
    echo "sweeping the demo into $tmp/results (no results/*/demo found)" >&2
    "$runner" sweep --quiet --no-report --results "$tmp/results" >&2 || die "the demo sweep failed"
    logdir=$(ls -d "$tmp"/results/*/demo | head -1)
fi
[ -d "$logdir" ] || die "$logdir is not a directory"
events=$(find "$logdir" -name 'events.out.tfevents.*' | wc -l)
[ "$events" -gt 0 ] || die "$logdir holds no TensorBoard event files (events.out.tfevents.*)"

python=$(scripts/py-venv.sh) || die "no Python environment with TensorBoard (scripts/py-venv.sh failed)"
tensorboard=$(dirname "$python")/tensorboard
[ -x "$tensorboard" ] || die "$tensorboard is missing"

source scripts/chromium.sh

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" >"$tmp/tensorboard.log" 2>&1 &
tb_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    if "$python" - "$url" <<'EOF' 2>/dev/null; then break; fi
import json, sys, urllib.request
runs = json.load(urllib.request.urlopen(sys.argv[1] + "/data/runs", timeout=2))
sys.exit(0 if runs else 1)
EOF
    kill -0 "$tb_pid" 2>/dev/null || die "TensorBoard exited: $(tail -5 "$tmp/tensorboard.log")"
    sleep 0.5
done
runs=$("$python" -c 'import json,sys,urllib.request; print(len(json.load(urllib.request.urlopen(sys.argv[1]+"/data/runs"))))' "$url") \
    || die "TensorBoard at $url did not answer: $(tail -5 "$tmp/tensorboard.log")"
[ "$runs" -gt 0 ] || die "TensorBoard lists no runs for $logdir"

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run
       --hide-scrollbars --virtual-time-budget=20000 --window-size="$width,$height")
# The Time Series dashboard (TensorBoard's default), its charts drawn as SVG (forceSVG) so that
# the lines are elements of the page that can be counted, not pixels of a WebGL canvas.
page="$url/?darkMode=false&forceSVG=true#timeseries"

# 1. Did the charts draw? Chromium prints the page's DOM once the virtual time has run out; each
#    run is a stroked <path> in every chart (raw and smoothed).
dom=$("$browser" "${flags[@]}" --dump-dom "$page" 2>/dev/null || true)
charts=$(printf '%s' "$dom" | grep -o '<line-chart ' | wc -l || true)
lines=$(printf '%s' "$dom" | grep -o '<path [^>]*stroke' | wc -l || true)
[ "$charts" -gt 0 ] || die "the page at $page shows no chart (TensorBoard's page did not finish loading?)"
[ "$lines" -ge "$runs" ] || die "the page at $page drew $lines lines for $runs runs"

# 2. The screenshot, checked for content: a picture of one colour means nothing drew.
"$browser" "${flags[@]}" --screenshot="$tmp/shot.png" "$page" 2>/dev/null || true
[ -s "$tmp/shot.png" ] || die "Chromium wrote no screenshot"
"$python" - "$tmp/shot.png" "$out" "$max_bytes" <<'EOF' || exit 1
import struct, sys, zlib

src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
# Read the PNG (8-bit RGB/RGBA, as Chromium writes it) to count its colours.
pos, idat, width = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
channels = {2: 3, 6: 4}[ctype]
stride = width * channels + 1
colours, prev = set(), bytearray(stride - 1)
for y in range(height):
    line = raw[y * stride:(y + 1) * stride]
    f, cur = line[0], bytearray(line[1:])
    for i in range(len(cur)):
        a = cur[i - channels] if i >= channels else 0
        b, c = prev[i], (prev[i - channels] if i >= channels else 0)
        if f == 1: cur[i] = (cur[i] + a) & 255
        elif f == 2: cur[i] = (cur[i] + b) & 255
        elif f == 3: cur[i] = (cur[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 4 == 0:
        for x in range(0, width, 4):
            colours.add(bytes(cur[x * channels:x * channels + 3]))
    prev = cur
if len(colours) < 50:
    print(f"error: the screenshot has {len(colours)} colours: nothing drew", file=sys.stderr)
    sys.exit(1)
if len(data) > limit:
    print(f"error: the screenshot is {len(data)} bytes, over {limit}; use a smaller WIDTH x HEIGHT", file=sys.stderr)
    sys.exit(1)
open(dst, "wb").write(data)
print(f"{width}x{height}, {len(colours)} colours (sampled), {len(data)} bytes")
EOF
echo "$logdir: $runs runs, $charts charts drawn, $lines lines; screenshot ${width}x${height} -> $out"
