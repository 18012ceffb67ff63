#!/bin/bash
# The README's two commands, on a fresh Debian 12 machine as root:
#
#   tests/quickstart.sh demo   install what is needed, build, run the demo
#   tests/quickstart.sh test   install what is needed, build, run the whole test suite
#
# `test` ends with one line "N passed, N failed" for the whole suite (meson's
# tests, then a short libFuzzer run of each target) and exits non-zero if
# anything failed. .ci/run runs it exactly as the README writes it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    meson ninja-build pkg-config gcc clang clang-format libclang-rt-14-dev
    libcurl4-openssl-dev libyaml-dev libsystemd-dev libyajl-dev libcmocka-dev
    python3 tzdata openssl scdoc man-db groff-base valgrind
)

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    echo "quickstart: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
    [ -d build ] || meson setup build -Dwerror=true >/dev/null
    ninja -C build >/dev/null
}

demo() {
    # The bundled Zuora simulator on 127.0.0.1:8080, and the daemon in the
    # foreground against it: a refresh fires every 20 seconds and is
    # followed to COMPLETED. Ctrl-C stops both.
    demo_state=$(mktemp -d)
    python3 tests/sim/zuora_sim.py --port 8080 --job-seconds 8 --log "$demo_state/simulator.log" \
        >"$demo_state/simulator.out" 2>&1 &
    demo_sim=$!
    trap 'kill "$demo_sim" 2>/dev/null; rm -rf "$demo_state"' EXIT
    for _ in $(seq 50); do
        kill -0 "$demo_sim" 2>/dev/null || break
        python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/_sim/health")' \
            2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$demo_sim" 2>/dev/null; then
        cat "$demo_state/simulator.out" >&2
        echo "quickstart: the simulator could not start (is port 8080 in use?)" >&2
        return 1
    fi
    echo "quickstart: the Zuora simulator listens on 127.0.0.1:8080; starting refreshd (Ctrl-C stops)"
    export REFRESHD_DEMO_SECRET=demo-secret
    build/daemon/refreshd check -c config/demo.yaml --next 1 >/dev/null
    build/daemon/refreshd run -c config/demo.yaml --state-dir "$demo_state" --log-target console || true
}

# Counts the results of a meson test run: "PASSED FAILED".
count() {
    python3 - "$1"/meson-logs/testlog.json <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL", "SKIP"):
        ok += 1
    else:
        bad += 1
print(ok, bad)
PY
}

suite() {
    local status=0 passed failed p f fuzz_line
    meson test -C build --print-errorlogs || status=1
    read -r passed failed < <(count build)

    # The whole suite again under AddressSanitizer and UBSan.
    [ -d build-asan ] || meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined >/dev/null
    ninja -C build-asan >/dev/null
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C build-asan --print-errorlogs \
        --suite unit --suite fuzz --suite cli --suite e2e || status=1
    read -r p f < <(count build-asan)
    passed=$((passed + p))
    failed=$((failed + f))

    # A few seconds of fresh fuzzing of every parser.
    # (Its output goes through a file: reopening /dev/stderr would truncate a log file.)
    local fuzz_log
    fuzz_log=$(mktemp)
    tests/fuzz/run.sh "${FUZZ_SECONDS:-10}" >"$fuzz_log" 2>&1 || status=1
    cat "$fuzz_log"
    fuzz_line=$(tail -n 1 "$fuzz_log")
    rm -f "$fuzz_log"
    p=$(sed -n 's/^fuzz: \([0-9]*\) passed.*/\1/p' <<<"$fuzz_line")
    f=$(sed -n 's/^fuzz: .* \([0-9]*\) failed$/\1/p' <<<"$fuzz_line")
    [ -n "$f" ] || f=1 # it did not get as far as its summary
    passed=$((passed + ${p:-0}))
    failed=$((failed + f))
    [ "$failed" -eq 0 ] || status=1
    echo "$passed passed, $failed failed"
    return $status
}

case "${1:-}" in
demo)
    install_packages
    build
    demo
    ;;
test)
    install_packages
    build
    suite
    ;;
*)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
