#!/usr/bin/env bash
# Installs what is missing, builds, runs every test (one `meson test` run: tests/meson.build
# registers each binary), and ends with "N passed, N failed", counted from the binaries' Catch2
# summaries in that run's log.
#   ./scripts/test.sh              plain build (build/)
#   ./scripts/test.sh --sanitize   under ASan+UBSan (build-asan/)
#   ./scripts/test.sh --tsan       under TSan (build-tsan/)
#   ./scripts/test.sh -- FILTER    only test binaries whose name contains FILTER
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

mode=plain filter=""
while (($#)); do
  case $1 in
    --sanitize) mode=asan ;;
    --tsan) mode=tsan ;;
    --) shift; filter=${1:-} ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

nodus_install_deps || exit 1

case $mode in
  plain) dir=build; opts=(-Dwerror=true) ;;
  asan) dir=build-asan; opts=(-Dwerror=true -Dbench=false -Db_sanitize=address,undefined -Db_lundef=false)
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
  tsan) dir=build-tsan; opts=(-Dwerror=true -Dbench=false -Db_sanitize=thread -Db_lundef=false)
        export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" ;;
esac

if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}" >/dev/null || { echo "meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
if ! ninja -C "$dir" >"$dir/build.log" 2>&1; then
  tail -n 60 "$dir/build.log"
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# zeromq.js for the gateway's JavaScript lesson (test_chat), into the build tree (not the
# sources: installed packages are not the project's code)
if [[ ! -d $dir/gateway-js/node_modules/zeromq ]]; then
  mkdir -p "$dir/gateway-js" && cp tests/chat/js/package.json "$dir/gateway-js/"
  if ! (cd "$dir/gateway-js" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    echo "warning: npm install of zeromq in $dir/gateway-js failed: the JavaScript gateway lesson will fail" >&2
  fi
fi

# Each test binary prints Catch2's summary; count test cases from it.
passed=0 failed=0
# below the kernel's ephemeral range (32768+), so no outgoing connection holds a test's port
export NODUS_PORTMAPPER_PORT=${NODUS_PORTMAPPER_PORT:-$((20000 + RANDOM % 12000))}
# Every test binary is a meson test (tests/meson.build: suites, timeouts, one at a time where
# nodes start). One `meson test` run; the counts below are read from that run's log: each
# binary's output, whose Catch2 summary gives its test cases.
names=()
while read -r t; do
  t=${t##* / }
  [[ -z $filter || test_$t == *"$filter"* ]] && names+=("$t")
done < <(meson test -C "$dir" --no-rebuild --list 2>/dev/null | grep ' / ')
((${#names[@]})) || { echo "no test matches '$filter'"; echo "0 passed, 1 failed"; exit 1; }
multiplier=1
[[ $mode != plain ]] && multiplier=2  # the sanitizers' pace
# Its progress (a line per binary as it ends) shows as it goes; the whole output goes to
# meson-test.log. MALLOC_PERTURB_=0: meson would otherwise set a random one, which the memory
# bounds of some tests would measure.
MALLOC_PERTURB_=0 meson test -C "$dir" --no-rebuild --num-processes 1 --timeout-multiplier $multiplier \
  "${names[@]}" 2>&1 | tee "$dir/meson-test.log" | grep --line-buffered -E '^ *[0-9]+/[0-9]+ '
echo "--- the test cases of each binary:"
# each test's output (stdout, then stderr) into $dir/test_NAME.log, and its result and seconds
python3 - "$dir" >"$dir/meson-results.txt" <<'PY' || { echo "cannot read $dir/meson-logs/testlog.json"; echo "0 passed, 1 failed"; exit 1; }
import json, sys
d = sys.argv[1]
for line in open(d + "/meson-logs/testlog.json"):
    t = json.loads(line)
    t["name"] = t["name"].split(" / ")[-1]  # (meson: "project:suite / name")
    with open("%s/test_%s.log" % (d, t["name"]), "w") as f:
        f.write(t.get("stdout") or "")
        f.write(t.get("stderr") or "")
    print(t["name"], t["result"], int(round(t.get("duration", 0))), t.get("returncode", -1))
PY
while read -r tname result took rc; do
  name=test_$tname
  log="$dir/$name.log"
  summary=$(grep -E '^(All tests passed|test cases:)' "$log" | tail -n 1)
  if [[ $summary =~ All\ tests\ passed.*\ ([0-9]+)\ test\ case ]]; then
    p=${BASH_REMATCH[1]}; f=0
  elif [[ $summary =~ test\ cases:\ *([0-9]+)\ \|\ *([0-9]+)\ passed\ \|\ *([0-9]+)\ failed ]]; then
    p=${BASH_REMATCH[2]}; f=${BASH_REMATCH[3]}
  elif [[ $summary =~ test\ cases:\ *([0-9]+)\ \|\ *([0-9]+)\ failed ]]; then
    p=0; f=${BASH_REMATCH[2]}
  else
    p=0; f=1
  fi
  # crashed, timed out (meson's TIMEOUT), aborted by the watchdog or a sanitizer
  if [[ $result != OK ]] && ((f == 0)); then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if ((f)); then
    echo "FAIL $name ($result, exit $rc, ${took} s):"
    # Catch2's failures (test case, file:line, expansion) first: the tail may be all log lines
    grep -n -B12 -A8 -E '(FAILED|failed with|due to unexpected exception|ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer)' "$log" | head -n 200
    echo "--- last lines of $log:"
    tail -n 40 "$log"
  else
    echo "ok   $name: $p test cases (${took} s)"
  fi
done <"$dir/meson-results.txt"
# checks KIND CMD...: runs a script that prints "ok   KIND: ..." / "FAIL KIND: ..." per check and
# counts them (a script that failed before it could say what counts as one failure)
checks() {
  local kind=$1 out rc fails
  shift
  out=$("$@" 2>&1)
  rc=$?
  echo "$out"
  passed=$((passed + $(grep -c "^ok   $kind: " <<<"$out")))
  fails=$(grep -c "^FAIL $kind: " <<<"$out")
  ((rc != 0 && fails == 0)) && fails=1
  failed=$((failed + fails))
}
# Packaging: install into a staging dir; the four kinds of consumer (a meson project with
# dependency('nodus'), one with nodus as a subproject, a CMake project with find_package, plain
# pkg-config) each build the local demo and run it (tests/packaging/consumers.sh).
if [[ $mode == plain && -z $filter ]]; then
  stage=$(mktemp -d)
  if meson install -C "$dir" --destdir "$stage" >"$dir/install.log" 2>&1; then
    pc=$(dirname "$(find "$stage" -name nodus.pc | head -n 1)")
    checks packaging bash tests/packaging/consumers.sh "$stage"
  else
    echo "FAIL packaging: meson install (see $dir/install.log)"
    failed=$((failed + 1))
  fi
  # every installed header alone, with only its package's flags and declared dependencies
  if [[ -n ${pc:-} ]] && hdr=$(python3 tests/packaging/check_headers.py "$stage" "$pc" 2>&1); then
    echo "ok   packaging: $hdr"
    passed=$((passed + 1))
  else
    echo "FAIL packaging: the installed headers and their .pc files:"
    echo "${hdr:-no nodus.pc was installed}"
    failed=$((failed + 1))
  fi
  rm -rf "$stage"
  # the library's layers: no upward include (as meson configures), no upward call (its objects)
  checks packaging bash tests/packaging/layers.sh "$dir"
  # bench.sh --plot's drawings follow a run's RESULT lines (tests/bench/plot_test.sh)
  checks bench bash tests/bench/plot_test.sh
fi

echo "$passed passed, $failed failed"
((failed == 0))
