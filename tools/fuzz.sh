#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz/ (every target its CMakeLists.txt defines), built with clang,
# ASan and UBSan into build-fuzz/, then run in one of two ways:
#   tools/fuzz.sh [TARGET...]                       regression: each target for 20 s from its seeds
#   tools/fuzz.sh --seconds 30 [TARGET...]          the same, 30 s each
#   tools/fuzz.sh --campaign --runs 10000000 [T...] a campaign: N executions per target, or
#   tools/fuzz.sh --campaign --seconds 3600 [T...]  a time per target; new inputs that add
#                                                   coverage are merged into the seed corpus
#   tools/fuzz.sh --campaign --minimise ...         ... and the corpus is then rewritten as the
#                                                   smallest set with the same coverage, leaving
#                                                   out found inputs over 8 KiB (the repository
#                                                   keeps small ones; named seeds stay whatever
#                                                   their size)
#   tools/fuzz.sh --campaign --fast ...             the campaign without ASan/UBSan (libFuzzer
#                                                   alone, build-fuzz-fast/: several times the
#                                                   executions a second; crashes, timeouts and
#                                                   out-of-memory still caught), then the whole
#                                                   resulting corpus replayed once under ASan+UBSan
# Seeds: tests/fuzz/corpus/<target>/ (committed), plus the real files named one per line in
# tests/fuzz/<target>.seeds (paths from the repository root, e.g. ../shared/tokenizers/..., where
# ../shared is $MOBILELLM_SHARED when set; a missing one is skipped); a dictionary:
# tests/fuzz/<target>.dict when present.
# A regression run never writes into the repository: its new inputs go to build-fuzz/work/.
# Each target prints its executions, executions a second, coverage (libFuzzer's cov: edges, ft:
# features) and corpus size; a crash, leak, timeout or out-of-memory fails the script, its input kept in
# build-fuzz/artifacts/ (reproduce: build-fuzz/tests/fuzz/<target> <that file>).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=regression seconds=20 runs="" minimise=0 fast=0 targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --campaign) mode=campaign; seconds="" ;;
    --seconds) seconds=$2; shift ;;
    --runs) runs=$2; shift ;;
    --minimise) minimise=1 ;;
    --fast) fast=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
if [[ $mode == campaign && -z "$seconds" && -z "$runs" ]]; then
  echo "fuzz.sh: --campaign needs --runs N or --seconds S" >&2
  exit 2
fi
[[ $fast -eq 0 || $mode == campaign ]] || { echo "fuzz.sh: --fast is for --campaign" >&2; exit 2; }

export MOBILELLM_SHARED=${MOBILELLM_SHARED:-$PWD/../shared}  # fuzz_tokenizer_spm reads it too
# A UBSan report is a find: stop there (the build lets UBSan recover, as a warning), with its stack.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
configure() {  # BUILD_DIR SANITIZE(ON|OFF)
  cmake -S . -B "$1" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOBILELLM_FUZZ=ON -DMOBILELLM_FUZZ_SANITIZE="$2" -DMOBILELLM_BUILD_TESTS=OFF \
    -DMOBILELLM_BUILD_BENCH=OFF -DMOBILELLM_SANITIZE=OFF "${launcher[@]}" >/dev/null
}
build=build-fuzz     # ASan + UBSan: regression runs, replays
configure "$build" ON
run=$build           # where the fuzzing itself runs
if [[ $fast -eq 1 ]]; then
  run=build-fuzz-fast
  configure "$run" OFF
fi
# Every target of tests/fuzz/CMakeLists.txt, as the build system lists them.
mapfile -t all < <(cmake --build "$build/tests/fuzz" --target help | sed -n 's/^\.\.\. \(fuzz_[A-Za-z0-9_]*\)$/\1/p' | sort)
[[ ${#all[@]} -gt 0 ]] || { echo "fuzz.sh: no fuzz_* targets in tests/fuzz/CMakeLists.txt" >&2; exit 1; }
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target $t (have: ${all[*]})" >&2; exit 2; }
done
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
[[ $run == "$build" ]] || cmake --build "$run" -j"$(nproc)" --target "${targets[@]}"

mkdir -p "$build/artifacts"
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  work=$build/work/$t
  rm -rf "$work" && mkdir -p "$work" "$corpus"
  extra=()
  if [[ -f tests/fuzz/$t.seeds ]]; then
    mkdir -p "$work.seeds" && rm -f "$work.seeds"/*
    while read -r f; do
      [[ -z "$f" || "$f" == \#* ]] && continue
      [[ "$f" == ../shared/* ]] && f=${MOBILELLM_SHARED:-../shared}/${f#../shared/}
      [[ -f "$f" ]] && cp "$f" "$work.seeds/" || echo "fuzz.sh: $t: seed $f not present, skipped" >&2
    done <"tests/fuzz/$t.seeds"
    extra=("$work.seeds")
  fi
  merge=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$t-")
  args=("${merge[@]}" -print_final_stats=1)
  [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
  [[ -n "$seconds" ]] && args+=(-max_total_time="$seconds")
  [[ -n "$runs" ]] && args+=(-runs="$runs")
  log=$build/work/$t.log
  echo "== $t: $mode, ${runs:+$runs executions}${seconds:+$seconds s}, seeds: $(ls "$corpus" | wc -l) committed${extra:+ + $(ls "${extra[0]}" | wc -l) real files}" >&2
  status=0
  "$run/tests/fuzz/$t" "${args[@]}" "$work" "$corpus" "${extra[@]}" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | tail -1 || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | tail -1 || true)
  line="$t: ${execs:-?} executions (${rate:-?}/s), ${cov:-cov: ?} edges, ${ft:-ft: ?} features, exit $status"
  if [[ $status -ne 0 ]]; then
    failed+=("$t")
    grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -20 >&2 || true
    line+=" (FAILED: log $log)"
  elif [[ $mode == campaign ]]; then
    before=$(ls "$corpus" | wc -l)
    if [[ $minimise -eq 1 ]]; then
      # Named seeds (real files, crafted repros; fuzz_session_file and fuzz_tokenizer_spm load
      # some by name) stay; what fuzzing found (libFuzzer names it by its SHA-1) is minimised,
      # from the inputs of at most 8 KiB.
      rm -rf "$work.min" "$work.found" && mkdir -p "$work.min" "$work.found"
      for f in "$corpus"/* "$work"/*; do
        [[ -f $f ]] || continue
        if [[ ! $(basename "$f") =~ ^[0-9a-f]{40}$ ]]; then
          [[ $f == "$corpus"/* ]] && cp "$f" "$work.min/"
        elif [[ $(stat -c %s "$f") -le 8192 ]]; then
          cp "$f" "$work.found/"
        fi
      done
      "$run/tests/fuzz/$t" -merge=1 "${merge[@]}" "$work.min" "$work.found" >>"$log" 2>&1
      rm -rf "$corpus" "$work.found" && mv "$work.min" "$corpus"
    else
      "$run/tests/fuzz/$t" -merge=1 "${merge[@]}" "$corpus" "$work" >>"$log" 2>&1
    fi
    line+=", corpus $before -> $(ls "$corpus" | wc -l) files"
    if [[ $run != "$build" ]]; then  # every input the campaign kept, once under ASan + UBSan
      replay=0
      "$build/tests/fuzz/$t" -runs=0 "${merge[@]}" "$work" "$corpus" >"$log.replay" 2>&1 || replay=$?
      line+=", ASan+UBSan replay of $(cat <(ls "$work") <(ls "$corpus") | sort -u | wc -l) inputs: exit $replay"
      if [[ $replay -ne 0 ]]; then
        failed+=("$t")
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log.replay" | head -20 >&2 || true
        line+=" (FAILED: log $log.replay)"
      fi
    fi
  fi
  echo "$line" >&2
  summary+=("$line")
done
echo "== fuzz summary ($mode)" >&2
printf '%s\n' "${summary[@]}" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: failed: ${failed[*]}; inputs in $build/artifacts/" >&2
  exit 1
fi
