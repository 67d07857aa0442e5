#!/usr/bin/env bash
# Builds the libFuzzer targets (if needed) and runs each for SECONDS on a scratch copy of its
# seed corpus (the repository's corpus never grows). Exits 1 if any target crashed, leaked,
# timed out or broke an invariant; the reproducer is left in the artifacts directory.
#
#   fuzz/run.sh [SECONDS] [TARGET...]       default: 60 s, every target
#
# Environment:
#   FUZZ_BUILD       build directory (default: <repo>/build-fuzz; configured here if new)
#   FUZZ_ARTIFACTS   where logs and crash inputs go (default: $FUZZ_BUILD/fuzz-artifacts)
#   FUZZ_JOBS        parallel build jobs (default 2)
#   FUZZ_ARGS        extra libFuzzer flags, e.g. "-max_len=8192"
#   FUZZ_KEEP_CORPUS=1  keep the grown scratch corpora (printed) to merge new seeds by hand
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
build=${FUZZ_BUILD:-$root/build-fuzz}
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
jobs=${FUZZ_JOBS:-2}

if [[ ! -f $build/CMakeCache.txt ]]; then
  gen=""; command -v ninja >/dev/null && gen="-G Ninja"
  cmake -S "$root" -B "$build" $gen -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DQUORUMREG_BUILD_FUZZ=ON \
    -DQUORUMREG_BUILD_TESTS=OFF -DQUORUMREG_BUILD_EXAMPLES=OFF -DQUORUMREG_BUILD_TOOLS=OFF
fi
cmake --build "$build" --target quorumreg_fuzz_all -j "$jobs"

if (( $# > 0 )); then
  targets=("$@")
else
  targets=()
  for d in "$root"/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

mkdir -p "$artifacts"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qr-fuzz.XXXXXX")
[[ ${FUZZ_KEEP_CORPUS:-0} == 1 ]] || trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  exe=$build/fuzz/fuzz_$t
  [[ -x $exe ]] || { echo "fuzz/run.sh: no target fuzz_$t in $build/fuzz" >&2; exit 2; }
  cp -r "$root/fuzz/corpus/$t" "$scratch/$t"
  dict=(); [[ -f $root/fuzz/dict/$t.dict ]] && dict=(-dict="$root/fuzz/dict/$t.dict")
  echo "=== fuzz_$t for ${seconds}s"
  # -timeout: one input taking this long is a hang; -rss_limit_mb: a runaway allocation.
  if "$exe" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts/$t-" "${dict[@]}" ${FUZZ_ARGS:-} "$scratch/$t" >"$artifacts/$t.log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$artifacts/$t.log" | tr '\n' ' '; echo
  else
    echo "FAILED: fuzz_$t (log: $artifacts/$t.log)"
    grep -E 'ERROR|invariant failed|SUMMARY|Test unit written|terminate|what\(\)' "$artifacts/$t.log" | head -20 || true
    failed+=("$t")
  fi
done
[[ ${FUZZ_KEEP_CORPUS:-0} == 1 ]] && echo "grown corpora kept in $scratch"
if (( ${#failed[@]} )); then
  echo "fuzz/run.sh: ${#failed[@]} target(s) failed: ${failed[*]}; reproducers in $artifacts" >&2
  exit 1
fi
echo "fuzz/run.sh: ${#targets[@]} target(s) ran ${seconds}s each without a finding"
