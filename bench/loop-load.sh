#!/bin/bash
# espdfud's loop under load: status round trips from one client while BOARDS
# (32) emulated boards flash and CLIENTS (200) other request streams hammer
# `jobs` and `history` over a store of JOBS (1,000,000) jobs; and the flash
# per board with and without the hammering, in one run.
#
#   bench/loop-load.sh
#   JOBS=20000 ROUNDS=1 bench/loop-load.sh   # a quick try
#   README=1 bench/loop-load.sh              # also write the figures into bench/README.md
#
# 1. espdfu-store-fill (bench/store-fill.c) writes JOBS finished jobs into a
#    fresh state directory (~1.5 GB for 1M, under $TMPDIR or /var/tmp; removed
#    at the end unless KEEP=1).
# 2. espdfu-emu (tests/emu) holds the emulated boards, plugged and unplugged
#    through its control socket; espdfud runs under its environment, as root,
#    with one rule auto-flashing every esp32s2 board in DFU mode with IMAGE.
# 3. bench/loop_load.py measures: a prober sends `status` every INTERVAL_MS
#    (10) on its own connection the whole time; a warm-up round plugs the
#    boards the first time (not counted); then ROUNDS (2) times: A, the boards
#    replugged and flashed with only the prober running; B, the same with the
#    hammer running: CLIENTS closed-loop request streams on CONNS_PER_UID (10)
#    connections from each of UIDS (61001..61005, group nogroup, the daemon's
#    group), since espdfud takes 64 connections in all and 16 per uid.
#
# Environment: BUILD (build directory, default build-bench), NOBUILD=1 (use
# the binaries there as they are), POLL (bwPollTimeout per 64-byte block, ms,
# default 100: 32 boards then ask the emulator for ~1,000 control transfers a
# second, well under its ~2,500), IMAGE (default the 10 KiB fixture
# tests/fixtures/mkdfu/1/dfu.bin: ~17 s per board at POLL=100), WARMUP_S (3,
# the hammer's head start before the boards are plugged), KEEP, README.
#
# A benchmark, not a test: goals (status p99 <= 10 ms; flash per board under
# the hammer within 2% of without) are printed as met or MISSED.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build-bench}
export JOBS=${JOBS:-1000000}
export IMAGE=${IMAGE:-$top/tests/fixtures/mkdfu/1/dfu.bin} # esp32s2, 10256 bytes

if [[ $(id -u) -ne 0 ]]; then
    echo "loop-load: run as root (the hammer's connections come from several uids)" >&2
    exit 2
fi
if [[ ${NOBUILD:-0} != 1 ]]; then
    "$top/tests/install-deps.sh"
    command -v python3 >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
    }
    cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$(nproc)" \
        --target espdfud espdfu-store-fill espdfu-emu espdfu-emu-shim >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/espdfu-loop-bench.XXXXXX")
chmod 755 "$work" # the hammer's uids reach the socket in it
emu_pid="" daemon_pid=""
stop() { # pid: SIGTERM, then SIGKILL after 10 s
    [[ -n $1 ]] || return 0
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    stop "$daemon_pid"
    stop "$emu_pid"
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "filling $work/state/jobs.db with $JOBS jobs..."
mkdir "$work/state"
"$build/bench/espdfu-store-fill" "$work/state" "$JOBS"

# The emulator without a command: it prints the environment a program needs.
"$build/tests/espdfu-emu" --control "$work/emu.sock" >"$work/emu.env" 2>"$work/emu.log" &
emu_pid=$!
for _ in $(seq 100); do grep -q ESPDFU_EMU_CONTROL "$work/emu.env" && break; sleep 0.1; done
grep -q ESPDFU_EMU_CONTROL "$work/emu.env" || {
    cat "$work/emu.log" >&2
    echo "loop-load: espdfu-emu did not start" >&2
    exit 1
}

cat >"$work/espdfud.conf" <<CONF
[daemon]
socket = $work/espdfud.sock
state-dir = $work/state
group = nogroup
wait-timeout-s = 604800

[rule bench]
chip = esp32s2
mode = dfu
image = $IMAGE
CONF
(
    # shellcheck disable=SC1091
    . "$work/emu.env"
    unset NOTIFY_SOCKET
    exec "$build/daemon/espdfud" -c "$work/espdfud.conf" --log-level "${LOG_LEVEL:-warning}"
) >"$work/espdfud.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 300); do
    [[ -S $work/espdfud.sock ]] && break
    sleep 0.1
done
sleep 0.5

python3 "$top/bench/loop_load.py" "$work" "$daemon_pid" "$emu_pid" || {
    echo "loop-load: failed; espdfud's log, then espdfu-emu's:" >&2
    tail -20 "$work/espdfud.log" >&2
    tail -20 "$work/emu.log" >&2
    exit 1
}
if [[ -s $work/espdfud.log ]]; then
    echo "espdfud's log (warnings):"
    sort "$work/espdfud.log" | uniq -c | sort -rn | head -10
fi
