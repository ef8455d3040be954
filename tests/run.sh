#!/bin/sh
# Runs the suite: unit binaries, integration binaries, then the end-to-end
# scripts. Each is one test here (cmocka counts its own cases inside).
# FOG_ONLY=unit|integration|e2e limits the layers; FOG_SKIP_E2E=1 skips QEMU.
# FOG_WRAP prefixes each binary (valgrind). Unit and integration binaries
# run FOG_JOBS at a time (default: one per core; each makes its own
# namespaces, ports and stores), the end-to-end scripts one at a time (their
# QEMU guests want the cores). Closes with "N passed, N failed".
set -u
# Every controller a test starts checks each document it builds from the
# one before, and each network's records it holds, against the store read
# whole (desired_verify() in controller/desired.h).
export FOG_TEST_DESIRED_VERIFY=1
O=${O:-build}
only=${FOG_ONLY:-}
jobs=${FOG_JOBS:-$(nproc 2>/dev/null || echo 1)}
logdir=$O/test-logs
mkdir -p "$logdir"
rm -f "$logdir"/*.result

# Runs one test, prints its line (with the failed checks and the end of its
# log when it fails) in one piece and leaves "rc" in $logdir/NAME.result.
run_one() { # name, command...
    name=$1; shift
    start=$(date +%s)
    if "$@" >"$logdir/$name.log" 2>&1; then
        rc=0
    else
        rc=$?
    fi
    secs=$(( $(date +%s) - start ))
    {
        if [ "$rc" -eq 0 ]; then
            echo "PASS  $name (${secs}s)"
        elif [ "$rc" -eq 77 ]; then
            echo "SKIP  $name: $(tail -n 1 "$logdir/$name.log")"
        else
            echo "FAIL  $name (${secs}s, exit $rc); last lines of $logdir/$name.log:"
            # The failed checks first (a sanitizer report after them would
            # push them out of the tail), then the end of the log.
            grep -E -m 20 -e '(error|Failure!?):|^\[  FAILED|^not ok|FAIL:' \
                "$logdir/$name.log" | sed 's/^/    ! /'
            tail -n 30 "$logdir/$name.log" | sed 's/^/    | /'
        fi
    } >"$logdir/$name.report"
    cat "$logdir/$name.report"
    echo "$rc" >"$logdir/$name.result"
}

# run_one for each "name command..." line of stdin, $jobs at a time: a
# token in a FIFO per free slot.
run_many() {
    if [ "$jobs" -le 1 ]; then
        while read -r name cmd; do
            # The list is on stdin: a test must not read it.
            # shellcheck disable=SC2086 # cmd is words on purpose
            run_one "$name" $cmd </dev/null
        done
        return
    fi
    fifo=$logdir/.slots.$$
    rm -f "$fifo"
    mkfifo "$fifo"
    exec 3<>"$fifo"
    rm -f "$fifo"
    i=0
    while [ "$i" -lt "$jobs" ]; do echo >&3; i=$((i + 1)); done
    while read -r name cmd; do
        read -r _ <&3
        # shellcheck disable=SC2086
        (run_one "$name" $cmd 3>&-; echo >&3) </dev/null &
    done
    wait
    exec 3>&-
}

want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

if want unit; then
    for src in tests/unit/test_*.c; do
        [ -e "$src" ] || continue
        n=$(basename "$src" .c)
        echo "$n ${FOG_WRAP:-} $O/tests/$n"
    done | run_many
fi
if want integration; then
    # Every answer these tests' clients receive is recorded (api/speclog.h)
    # and then checked against api/openapi.yaml.
    FOG_SPEC_LOG=$(pwd)/$logdir/spec-answers.jsonl; export FOG_SPEC_LOG
    : >"$FOG_SPEC_LOG"
    for src in tests/integration/test_*.c tests/security/test_*.c; do
        [ -e "$src" ] || continue
        n=$(basename "$src" .c)
        echo "$n ${FOG_WRAP:-} $O/tests/$n"
    done | run_many
    run_one openapi_answers sh tests/spec/check_answers.sh "$FOG_SPEC_LOG"
    unset FOG_SPEC_LOG
fi
if want e2e && [ "${FOG_SKIP_E2E:-0}" != 1 ]; then
    for t in tests/e2e/test_*.sh; do
        [ -e "$t" ] || continue
        n=$(basename "$t" .sh)
        run_one "$n" env O="$O" bash "$t"
    done
fi

pass=0; fail=0; skip=0; failed=""
for f in "$logdir"/*.result; do
    [ -e "$f" ] || continue
    case $(cat "$f") in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)) ;;
    *) fail=$((fail + 1)); failed="$failed $(basename "$f" .result)" ;;
    esac
done
echo
[ -n "$failed" ] && echo "failed:$failed"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
