#!/bin/bash
# The main job, with no hardware: espdfud (unprivileged, socket and state in a
# temporary directory) auto-flashing four emulated boards, plugged one after
# another: ESP32-S2 boards in the ROM's run-time presentation (detach first) and
# ESP32-S3 boards in DFU mode. Sample images are made by `espdfuctl pack`, the
# terminal shows `espdfuctl watch`, and the end is a summary per port. Exit 0
# only if every board received its image byte-exact.
#
#   tests/demo.sh            run once and exit
#   tests/demo.sh --keep     keep espdfud and the emulator running; plug more
#                            boards from another terminal (the command is printed)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
keep=false
case "${1:-}" in
--keep) keep=true ;;
"") ;;
*)
    echo "usage: tests/demo.sh [--keep]" >&2
    exit 2
    ;;
esac

"$top/tests/install-deps.sh"
# ESPDFU_DEMO_BUILD: an existing build tree to use as it is configured (the
# CTest test "demo" runs this script on the sanitizer build).
build=${ESPDFU_DEMO_BUILD:-$top/build-demo}
if [[ ! -f $build/CMakeCache.txt ]]; then
    echo "demo: configuring $build"
    cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
echo "demo: building in $build"
cmake --build "$build" -j"$(nproc)" --target espdfud espdfuctl espdfu-emu >/dev/null
ctl=$build/client/espdfuctl
emu=$build/tests/espdfu-emu

work=$(mktemp -d /tmp/espdfud-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# espdfud runs unprivileged: as the invoking user, or as nobody when that is root.
# (The emulator and the daemon must then read the build tree: it is world-readable
# in a normal checkout.)
run_as=()
if [[ $(id -u) -eq 0 ]]; then
    run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    if "${run_as[@]}" test -x "$build/daemon/espdfud" -a -x "$emu"; then
        chown nobody:nogroup "$work"
    else
        echo "demo: warning: user nobody cannot reach $build; running espdfud as root" >&2
        run_as=()
    fi
fi

# Sample firmware, as `idf.py dfu` would pack it: bootloader, partition table, app.
head -c 16384 /dev/urandom >"$work/bootloader.bin"
head -c 3072 /dev/urandom >"$work/partition-table.bin"
head -c 131072 /dev/urandom >"$work/app.bin"
"$ctl" pack -o "$work/esp32s2.bin" --chip esp32s2 --flash-size 4MB 0x1000 "$work/bootloader.bin" \
    0x8000 "$work/partition-table.bin" 0x10000 "$work/app.bin" >/dev/null
"$ctl" pack -o "$work/esp32s3.bin" --chip esp32s3 --flash-size 8MB 0x0 "$work/bootloader.bin" \
    0x8000 "$work/partition-table.bin" 0x10000 "$work/app.bin" >/dev/null
chmod 644 "$work"/*.bin

cat >"$work/espdfud.conf" <<EOF
# The demo's station: every ESP32-S2 and ESP32-S3 board plugged is flashed.
[daemon]
socket = $work/espdfud.sock
state-dir = $work/state
workers = 8

[rule esp32s2]
chip = esp32s2
image = $work/esp32s2.bin

[rule esp32s3]
chip = esp32s3
image = $work/esp32s3.bin
EOF
mkdir -p "$work/state" "$work/received"
chown -R --reference="$work" "$work"

boards=(1-1:esp32s2:runtime 1-2:esp32s3:dfu 1-3.1:esp32s2:runtime 1-3.2:esp32s3:dfu)
board_args=()
for b in "${boards[@]}"; do board_args+=(--board "$b"); done

export ESPDFU_SOCKET=$work/espdfud.sock
# The emulator needs no privileges either (its testbed is files in $work's
# sibling temp dir), and espdfud inherits its user.
"${run_as[@]}" "$emu" --control "$work/emu.sock" --plug-interval 1500 "${board_args[@]}" \
    --received-dir "$work/received" --report-json "$work/report.json" -- \
    "$build/daemon/espdfud" --config "$work/espdfud.conf" \
    --log-level warning 2>"$work/espdfud.log" &
pids+=($!)

# Wait for the control socket, then show the station screen.
for _ in $(seq 100); do
    [[ -S $ESPDFU_SOCKET ]] && "$ctl" status >/dev/null 2>&1 && break
    sleep 0.1
done
"$ctl" status >/dev/null || {
    cat "$work/espdfud.log" >&2
    echo "demo: espdfud did not come up" >&2
    exit 1
}
"$ctl" watch &
watch_pid=$!
pids+=("$watch_pid")

if $keep; then
    echo
    echo "demo: running. Plug another emulated board from another terminal with:"
    echo "  $emu --send $work/emu.sock plug 1-5 esp32s3 dfu"
    echo "demo: espdfuctl talks to it with ESPDFU_SOCKET=$ESPDFU_SOCKET. Ctrl-C ends the demo."
    wait "$watch_pid" || true
    exit 0
fi

# Until every board has a finished job (bounded: 120 s).
finished=0
for _ in $(seq 1200); do
    finished=$("$ctl" jobs --state finished --json |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
    ((finished >= ${#boards[@]})) && break
    sleep 0.1
done
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
"$ctl" jobs --json >"$work/jobs.json"
kill -TERM "${pids[0]}" 2>/dev/null || true # espdfu-emu passes SIGTERM to espdfud
wait "${pids[0]}" 2>/dev/null || true

# The summary: per port, the job's result and time, and what the board received.
echo
python3 - "$work" "${boards[@]}" <<'PY'
import json, os, sys
work, boards = sys.argv[1], sys.argv[2:]
jobs = {j["path"]: j for j in json.load(open(os.path.join(work, "jobs.json")))["jobs"]}
ok = True
print(f"{'PORT':8} {'CHIP':8} {'MODE':8} {'RESULT':10} {'TIME':>7} {'BYTES':>8}  BOARD RECEIVED")
for spec in boards:
    path, chip, mode = spec.split(":")
    image = open(os.path.join(work, chip + ".bin"), "rb").read()[:-16]
    rx_path = os.path.join(work, "received", path + ".bin")
    rx = open(rx_path, "rb").read() if os.path.exists(rx_path) else b""
    exact = rx == image
    j = jobs.get(path, {})
    t = (j.get("finished") or 0) - (j.get("started") or 0)
    result = j.get("state", "no job")
    ok &= exact and result == "succeeded"
    print(f"{path:8} {chip:8} {mode:8} {result:10} {t:6.1f}s {len(rx):8}  "
          + ("byte-exact" if exact else "MISMATCH"))
    if j.get("error"):
        print(f"         error: {j['error']['message']} [{j['error']['code']}]")
print("demo: every board received its image byte-exact" if ok
      else "demo: FAILED: not every board was flashed byte-exact")
sys.exit(0 if ok else 1)
PY
