#!/bin/bash
# espdfu-flash against dfu-util 0.11, and against the board's own limit, on the
# same emulated board in one run. Ratios only: these machines are noisy, so
# absolute seconds mean little, and the runs alternate (ours, theirs, ours...).
#
#   bench/flash-vs-dfu-util.sh [SIZE_KIB] [ROUNDS]
#
# Environment: POLL (bwPollTimeout the board reports per block, ms, default 1),
# ERASE (ms per 512 KiB entry, default 200), TRANSFER (wTransferSize, default 64).
#
# "The board's own limit" is the time the board itself asks for (every
# bwPollTimeout and erase stall: the model's asked_ms) plus the control
# transfers no host can avoid (DNLOAD, and one GETSTATUS per answer: two per
# block, three when the board first answers dfuDNBUSY), each at the cost of
# one emulated transfer. That cost is calibrated in the same run, on a board
# that asks for no waits at all, as the faster of the two tools.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
size_kib=${1:-1024}
rounds=${2:-2}
poll=${POLL:-1}
erase=${ERASE:-200}
transfer=${TRANSFER:-64}
build=$top/build-bench

"$top/tests/install-deps.sh"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target espdfuctl espdfu-flash espdfu-emu >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c $((size_kib * 1024)) /dev/urandom >"$work/app.bin"
"$build/client/espdfuctl" pack -o "$work/dfu.bin" --chip esp32s2 --flash-size 4MB \
    0x10000 "$work/app.bin" >/dev/null
payload=$(($(stat -c %s "$work/dfu.bin") - 16))
blocks=$(((payload + transfer - 1) / transfer))
board="1-1:esp32s2:dfu,transfer=$transfer,poll=$poll,erase=$erase"
free_board="1-1:esp32s2:dfu,transfer=$transfer,poll=0,erase=0"

# One flash under a fresh emulated $board; prints "ms transfers asked_ms".
run() {
    local report=$work/report.json start end
    start=$(date +%s%N)
    "$build/tests/espdfu-emu" --board "$board" --expect "$work/dfu.bin" \
        --report-json "$report" -- "$@" >/dev/null 2>"$work/log" || {
        cat "$work/log" >&2
        echo "bench: flash failed: $*" >&2
        exit 1
    }
    end=$(date +%s%N)
    python3 - "$report" $(((end - start) / 1000000)) <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))[0]
print(sys.argv[2], b["control_transfers"], b["asked_ms"])
PY
}

ours=(); theirs=(); calib=()
echo "payload $payload bytes, $blocks blocks of $transfer, bwPollTimeout ${poll} ms, erase ${erase} ms"
for ((i = 1; i <= rounds; i++)); do
    o=$(run "$build/daemon/espdfu-flash" --quiet --path 1-1 "$work/dfu.bin")
    t=$(run dfu-util -d 303a:0002 -p 1-1 -D "$work/dfu.bin")
    echo "round $i: ms/transfers/asked  espdfu-flash: $o   dfu-util: $t"
    ours+=("$o"); theirs+=("$t")
    board=$free_board
    calib+=("$(run "$build/daemon/espdfu-flash" --quiet --path 1-1 "$work/dfu.bin")")
    calib+=("$(run dfu-util -d 303a:0002 -p 1-1 -D "$work/dfu.bin")")
    board="1-1:esp32s2:dfu,transfer=$transfer,poll=$poll,erase=$erase"
done

python3 - "$blocks" "$poll" "${ours[@]}" -- "${theirs[@]}" -- "${calib[@]}" <<'PY'
import statistics, sys
blocks, poll = int(sys.argv[1]), int(sys.argv[2])
groups, cur = [], []
for a in sys.argv[3:] + ["--"]:
    if a == "--":
        groups.append([tuple(int(v) for v in x.split()) for x in cur]); cur = []
    else:
        cur.append(a)
ours, theirs, calib = groups
med = statistics.median
ratios = [o[0] / t[0] for o, t in zip(ours, theirs)]
cost = min(c[0] / c[1] for c in calib)  # ms per emulated control transfer, no waits asked
needed = blocks * (3 if poll > 0 else 2)
floor = med(o[2] for o in ours) + needed * cost
print(f"espdfu-flash / dfu-util, time:        {med(ratios):.3f}  (rounds: "
      + ", ".join(f"{r:.3f}" for r in ratios) + ")")
print(f"control transfers, espdfu-flash / dfu-util: {med(o[1] for o in ours):.0f} / "
      f"{med(t[1] for t in theirs):.0f}  (unavoidable: {needed})")
print(f"espdfu-flash / board's own limit:     {med(o[0] for o in ours) / floor:.3f}  "
      f"(limit {floor / 1000:.1f} s: {med(o[2] for o in ours) / 1000:.1f} s asked by the board "
      f"+ {needed} transfers at {cost:.3f} ms)")
print(f"dfu-util / board's own limit:         {med(t[0] for t in theirs) / floor:.3f}")
PY
