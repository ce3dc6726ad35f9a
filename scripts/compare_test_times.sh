#!/usr/bin/env bash
# Times test modules as they were at COMMIT and as they are now, one after the other in one session:
#
#     scripts/compare_test_times.sh COMMIT test_parity test_cli ...
#
# For each module, the old test/ directory (the module and its helpers, taken from COMMIT) and
# the current one each run the module once against the current package. It prints wall, user and
# system seconds (child processes included) and pytest's last line. Compare the two runs as a
# ratio: on a shared machine, the absolute figures say little. Old modules that need code the
# package no longer has fail, and the comparison says so.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$1
shift
old=$(mktemp -d "$PWD/.test_times_XXXXXX")
trap 'rm -rf "$old"' EXIT
git archive "$commit" test | tar -x -C "$old" --strip-components=1
for module in "$@"; do
  for which in before after; do
    directory=test
    [ "$which" = before ] && directory=$old
    log=$(mktemp)
    /usr/bin/time -f "$module $which: %e s wall, %U s user, %S s sys" -o "$log.time" \
      ./scripts/run.sh pytest -q -p no:cacheprovider -c setup.cfg --rootdir=. "$directory/$module.py" >"$log" 2>&1 || true
    echo "$(cat "$log.time") | $(tail -1 "$log")"
    rm -f "$log" "$log.time"
  done
done
