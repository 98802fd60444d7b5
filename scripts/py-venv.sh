#!/usr/bin/env bash
# The Python tools the tests read results back with (TensorBoard's own event reader, MLflow's
# tracking server and client), in one virtual environment under target/ that every test reuses.
#
#   scripts/py-venv.sh            # create or complete target/py-venv; prints its python on success
#
# Exits non-zero with a message saying what is missing (python3, its venv module, pip or the
# packages); the tests then skip and print that message. A lock keeps parallel tests from
# building it twice.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
# Pinned, so every machine reads results back with the same code (the versions the tests were
# written against).
packages=(tensorboard==2.21.0 mlflow==3.17.2)
mkdir -p target
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 2; }
exec 9>target/py-venv.lock
if command -v flock >/dev/null; then flock 9; fi
want="${packages[*]}"
if [ -f "$venv/.complete" ] && [ "$(cat "$venv/.complete")" = "$want" ]; then echo "$PWD/$venv/bin/python"; exit 0; fi
rm -rf "$venv"
python3 -m venv "$venv" >&2 || {
  echo "python3 cannot create a virtual environment (on Debian: apt-get install python3-venv)" >&2
  rm -rf "$venv"; exit 2
}
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2 || true
"$venv/bin/python" -m pip install --quiet "${packages[@]}" >&2 || {
  echo "pip could not install ${packages[*]} into $venv (no package index reachable?)" >&2
  exit 3
}
printf '%s' "$want" >"$venv/.complete"
echo "$PWD/$venv/bin/python"
