#!/usr/bin/env bash
# make docs: runs Doxygen over the public headers (docs/Doxyfile) and judges its warnings.
#   - Any warning other than "is not documented" (a broken command, an unknown parameter name,
#     an unsupported tag) fails: the reference must build clean.
#   - Undocumented public members may not outnumber docs/undocumented.budget. The budget is a
#     ratchet: it only goes down; when the count falls below it, lower it in the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build-docs && mkdir -p build-docs
doxygen docs/Doxyfile
log=build-docs/warnings.log
# Doxygen reports some warnings twice (once per pass); judge each once. A warning's text may
# continue on indented lines; the file:line prefix starts each one.
sort -u "$log" | grep -E '^[^ ].*: warning: ' > build-docs/warnings.unique || true
grep -v 'is not documented\.$' build-docs/warnings.unique > build-docs/errors.txt || true
grep 'is not documented\.$' build-docs/warnings.unique > build-docs/undocumented.txt || true
budget=$(tr -dc '0-9' < docs/undocumented.budget)
count=$(wc -l < build-docs/undocumented.txt)
if [ -s build-docs/errors.txt ]; then
  echo "documentation errors:"; cat build-docs/errors.txt; exit 1
fi
echo "undocumented public members: $count (budget $budget); per header:"
sed -E 's/:[0-9]+: warning: .*//; s#.*/include/##' build-docs/undocumented.txt | sort | uniq -c | sort -rn
if [ "$count" -gt "$budget" ]; then
  echo "more undocumented members than the budget: document the new ones (build-docs/undocumented.txt)"
  exit 1
fi
if [ "$count" -lt "$budget" ]; then
  echo "fewer than the budget: lower docs/undocumented.budget to $count"
fi
echo "reference written to build-docs/html/index.html"
