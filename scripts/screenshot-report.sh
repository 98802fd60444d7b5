#!/usr/bin/env bash
# Open a report.html in headless Chromium, check that every embedded plot decodes and renders,
# and save a screenshot of the top of the page.
#
#   scripts/screenshot-report.sh results/<code-state>/<experiment>/report/report.html [OUT.png] [WIDTH] [HEIGHT]
#
# OUT defaults to report.png next to the report; WIDTH x HEIGHT to 1200 x 1800. Needs Chromium
# (Debian: apt-get install -y chromium; installed automatically when run as root). Exits 1 when
# the page has no images or one of them did not render. Offline: the report has no external
# resources and Chromium is started with background networking off.
set -euo pipefail

html=${1:?usage: $0 REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-$(dirname "$html")/report.png}
width=${3:-1200}
height=${4:-1800}

[ -f "$html" ] || { echo "error: $html does not exist (run \`runner report\` first)" >&2; exit 1; }

source "$(dirname "$0")/chromium.sh"

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run
       --hide-scrollbars --virtual-time-budget=5000)

abs() { (cd "$(dirname "$1")" && printf '%s/%s' "$(pwd)" "$(basename "$1")"); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Do the plots render? A copy of the page that records, once loaded, how many images
#    decoded to a non-empty picture; Chromium prints the resulting DOM.
check="$tmp/check.html"
sed 's#</body>#<script>addEventListener("load",()=>{const i=[...document.images];document.body.dataset.plots=i.length+"/"+i.filter(x=>x.complete\&\&x.naturalWidth>0).length;});</script></body>#' "$html" > "$check"
dom=$("$browser" "${flags[@]}" --dump-dom "file://$check" 2>/dev/null)
counts=$(printf '%s' "$dom" | grep -o 'data-plots="[0-9]*/[0-9]*"' | head -1 | tr -dc '0-9/')
total=${counts%/*}
rendered=${counts#*/}
if [ -z "$counts" ] || [ "$total" = 0 ] || [ "$total" != "$rendered" ]; then
    echo "error: $html: ${rendered:-0} of ${total:-0} plots rendered" >&2
    exit 1
fi

# 2. The screenshot. Figures of cells are folded in <details>; the picture shows the top.
"$browser" "${flags[@]}" --window-size="$width,$height" --screenshot="$(abs "$tmp")/shot.png" "file://$(abs "$html")" 2>/dev/null
[ -s "$tmp/shot.png" ] || { echo "error: Chromium wrote no screenshot" >&2; exit 1; }
cp "$tmp/shot.png" "$out"
echo "$html: $rendered of $total plots rendered; screenshot ${width}x${height} -> $out"
