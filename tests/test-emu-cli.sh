#!/bin/sh
# espdfu-emu, the command-line emulator: exit codes, --expect, the report,
# received bytes, hotplug with --plug-interval seen by two listeners at once
# (the per-process uevent sockets), and the control socket while a command runs.
# usage: test-emu-cli.sh ESPDFU-EMU ESPDFU-EMU-MONITOR DFU-UTIL FIXTURES-DIR WORK-DIR
set -u
EMU=$1
MON=$2
DFU_UTIL=$3
FIX=$4/1/dfu.bin
WORK=$5
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

command -v "$DFU_UTIL" >/dev/null 2>&1 || { echo "FAIL: dfu-util not found" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
size=$(wc -c <"$FIX")
head -c $((size - 16)) "$FIX" >"$WORK/payload.bin"

echo "== flash with --expect, --received-dir, --report-json"
"$EMU" --board 1-1:esp32s2:dfu --expect "$FIX" --received-dir "$WORK/rx" \
    --report-json "$WORK/report.json" --timeout 60 \
    -- "$DFU_UTIL" -d 303a:0002 -p 1-1 -D "$FIX" >"$WORK/flash.log" 2>&1
st=$?
[ $st -eq 0 ] || { fail "flash exited $st"; cat "$WORK/flash.log" >&2; }
cmp -s "$WORK/rx/1-1.bin" "$WORK/payload.bin" || fail "1-1.bin is not the payload"
grep -q '"path":"1-1"' "$WORK/report.json" || fail "report lacks the board"
grep -q '"validated":true' "$WORK/report.json" || fail "report: not validated"
grep -q '"downloads_ok":1' "$WORK/report.json" || fail "report: downloads_ok"

echo "== --expect fails when a board got nothing; the command's status passes through"
"$EMU" --board 1-1:esp32s2:dfu --expect "$FIX" -- true 2>"$WORK/expect.log"
st=$?
[ $st -eq 1 ] || fail "--expect with nothing received exited $st, want 1"
grep -q "received 0 bytes" "$WORK/expect.log" || fail "no mismatch message"
"$EMU" --board 1-1:esp32s2:dfu -- sh -c 'exit 7' 2>/dev/null
st=$?
[ $st -eq 7 ] || fail "the command's exit status 7 came back as $st"
"$EMU" --board 1-1:nosuchchip:dfu -- true 2>/dev/null
st=$?
[ $st -eq 2 ] || fail "a bad --board exited $st, want 2"

echo "== hotplug: two listeners (same fd number in both processes) see both boards"
"$EMU" --plug-interval 100 --listeners 2 --board 1-1:esp32s2:dfu --board 1-3.2:esp32s3:runtime \
    --timeout 30 -- sh -c "\"$MON\" 2 10000 >\"$WORK/mon-a.txt\" &
                           \"$MON\" 2 10000 >\"$WORK/mon-b.txt\"; b=\$?; wait \$!; a=\$?
                           exit \$((a + b))" 2>"$WORK/hotplug.log"
st=$?
[ $st -eq 0 ] || { fail "hotplug listeners exited $st"; cat "$WORK/hotplug.log" >&2; }
for f in mon-a mon-b; do
    grep -q '^add 1-1 ' "$WORK/$f.txt" || fail "$f did not see 1-1"
    grep -q '^add 1-3.2 ' "$WORK/$f.txt" || fail "$f did not see 1-3.2"
done

echo "== run-time detach: remove then add on the same path with a new devnum"
"$EMU" --board 1-2:esp32s2:runtime --timeout 30 -- sh -c "
    \"$MON\" 2 10000 >\"$WORK/detach.txt\" & sleep 0.5
    \"$DFU_UTIL\" -e -d 303a:0002 -p 1-2 >/dev/null 2>&1 || exit 20
    wait \$! || exit 21" 2>"$WORK/detach.log"
st=$?
[ $st -eq 0 ] || { fail "detach script exited $st"; cat "$WORK/detach.log" "$WORK/detach.txt" >&2; }
old=$(sed -n 's/^remove 1-2 //p' "$WORK/detach.txt")
new=$(sed -n 's/^add 1-2 //p' "$WORK/detach.txt")
[ -n "$old" ] && [ -n "$new" ] && [ "$old" != "$new" ] || fail "devnum $old -> $new"

echo "== an unplug fault in the first attempt, back after 300 ms, the retry succeeds"
"$EMU" --board 1-1:esp32s2:dfu,unplug-at=20,fault-attempts=1,replug-after=300 --expect "$FIX" \
    --report-json "$WORK/retry.json" --timeout 60 -- sh -c "
    \"$DFU_UTIL\" -d 303a:0002 -p 1-1 -D \"$FIX\" >/dev/null 2>&1 && exit 30
    sleep 1
    \"$DFU_UTIL\" -d 303a:0002 -p 1-1 -D \"$FIX\" >/dev/null 2>&1 || exit 31" 2>"$WORK/retry.log"
st=$?
[ $st -eq 0 ] || { fail "retry after an unplug fault exited $st"; cat "$WORK/retry.log" >&2; }
grep -q '"attempts":2' "$WORK/retry.json" || fail "retry: attempts"
grep -q '"enumerations":2' "$WORK/retry.json" || fail "retry: enumerations"

echo "== control socket: plug, list, unplug, report while the command runs"
CTL=$WORK/ctl.sock
"$EMU" --control "$CTL" --board 1-1:esp32s2:dfu --timeout 30 -- sh -c "
    \"$EMU\" --send \"\$ESPDFU_EMU_CONTROL\" plug 1-4 esp32s3 dfu,transfer=128 || exit 10
    \"$DFU_UTIL\" -l | grep -q 'path=\"1-4\"' || exit 11
    \"$EMU\" --send \"\$ESPDFU_EMU_CONTROL\" unplug 1-4 || exit 12
    \"$DFU_UTIL\" -l | grep -q 'path=\"1-4\"' && exit 13
    \"$EMU\" --send \"\$ESPDFU_EMU_CONTROL\" replug 1-4 runtime || exit 14
    \"$DFU_UTIL\" -l | grep -q 'Runtime.*path=\"1-4\"' || exit 15
    \"$EMU\" --send \"\$ESPDFU_EMU_CONTROL\" report >\"$WORK/ctl-report.json\" || exit 16
    \"$EMU\" --send \"\$ESPDFU_EMU_CONTROL\" bogus >/dev/null && exit 17
    exit 0" >"$WORK/ctl.log" 2>&1
st=$?
[ $st -eq 0 ] || { fail "control script exited $st"; cat "$WORK/ctl.log" >&2; }
grep -q '"path":"1-4"' "$WORK/ctl-report.json" || fail "report over the socket lacks 1-4"
grep -q '"enumerations":2' "$WORK/ctl-report.json" || fail "1-4 was not replugged"

[ $failures -eq 0 ] && echo "emu-cli: ok" && exit 0
echo "emu-cli: $failures failure(s)" >&2
exit 1
