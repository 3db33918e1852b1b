#!/bin/sh
# SPDX-License-Identifier: MIT
# espdfuctl's offline commands through the real binary: inspect and pack, their
# output, their exit codes (0 ok, 1 failure, 2 usage) and the atomic write.
#
# usage: test-cli-image.sh ESPDFUCTL FIXTURES_MKDFU_DIR WORK_DIR
set -u

ctl=$1
fix=$2
work=$3
failures=0

rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run EXPECTED_EXIT ARGS...: runs espdfuctl, keeps stdout in out, stderr in err
run() {
    want=$1
    shift
    "$ctl" "$@" >out 2>err
    got=$?
    if [ "$got" != "$want" ]; then
        fail "espdfuctl $* exited $got, expected $want"
        sed 's/^/  stderr: /' err >&2
    fi
}

# has FILE TEXT: FILE contains TEXT (fixed string)
has() {
    grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 300 "$1")"
}

same() {
    cmp -s "$1" "$2" || fail "$1 and $2 differ"
}

# json EXPR: stdout is one JSON document where EXPR (jq, or python3) is true
json() {
    if command -v jq >/dev/null 2>&1; then
        jq -e "$1" out >/dev/null || fail "JSON check '$1' failed: $(head -c 300 out)"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys; json.load(open("out"))' || fail "stdout is not JSON"
    else
        echo "note: neither jq nor python3: JSON only checked by grep" >&2
    fi
}

# ---- global ----
run 0 --help
has out "Exit status:"
has out "  2  usage error"
has out "  6  the flash job failed"
run 2
run 2 no-such-command
has err "unknown command 'no-such-command'"
run 0 help inspect
has out "Usage: espdfuctl inspect"

# ---- inspect: golden vectors ----
run 0 inspect "$fix/1/dfu.bin"
has out "chip:        esp32s2"
has out "303a:0002"
has out "4MB (4194304 bytes)"
has out "payload:     10240 bytes"
has out "97523b59902dbbc180e960bfb64f1e3561c8df223849891245ae696203fb6fef"
has out "flash_params.dat  0x00000000          32  param,noerase,ignore-md5  ignored"
has out "3.bin             0x00010000        3072  -                         ok"

run 0 inspect "$fix/2/dfu.bin"
has out "bin.1"
has out "30fd6c93b9db14d4c45b7ed00db1ab93e499016e809984b9805f1b1526efe8bf"

run 0 inspect --json "$fix/1/dfu.bin"
json '.valid == true and .chip == "esp32s2" and .vid == 12346 and .pid == 2
      and .flash_size == 4194304 and .payload_size == 10240
      and .sha256 == "97523b59902dbbc180e960bfb64f1e3561c8df223849891245ae696203fb6fef"
      and (.entries | length) == 4 and .entries[1].name == "1.bin"
      and .entries[1].address == 4096 and .entries[0].flags == ["param","noerase","ignore-md5"]
      and .entries[0].md5_status == "ignored" and .entries[3].md5_status == "ok"'

# ---- inspect: invalid input ----
cp "$fix/1/dfu.bin" corrupt.bin
printf 'X' | dd of=corrupt.bin bs=1 seek=4096 conv=notrunc 2>/dev/null
run 1 inspect corrupt.bin
has err "espdfuctl: corrupt.bin: DFU suffix at offset 0x280c: dwCRC is"
has err "[crc-mismatch]"
run 1 inspect --json corrupt.bin
json '.valid == false and .error.code == "crc-mismatch"'

head -c 5000 "$fix/1/dfu.bin" >cut.bin
run 1 inspect cut.bin
has err "[image-truncated]"

: >empty.bin
run 1 inspect empty.bin
has err "[image-empty]"
run 1 inspect does-not-exist.bin
has err "espdfuctl: does-not-exist.bin: cannot open: No such file or directory [image-io]"
run 1 inspect .
has err "[image-not-regular]"
run 2 inspect
run 2 inspect a b
run 2 inspect --frobnicate "$fix/1/dfu.bin"

# ---- pack: the golden vectors ----
run 0 pack -o g1.bin --pid 2 --flash-size 4MB 0x1000 "$fix/1/1.bin" 0x8000 "$fix/1/2.bin" \
    0x10000 "$fix/1/3.bin"
same g1.bin "$fix/1/dfu.bin"
has out "g1.bin: 10256 bytes, esp32s2, 4MB flash, 4 entries"
run 0 pack --chip esp32s2 --flash-size 4MB -o g1c.bin 0x10000 "$fix/1/3.bin" \
    4096 "$fix/1/1.bin" 0x8000 "$fix/1/2.bin"
same g1c.bin "$fix/1/dfu.bin"

printf '\316\316\316\316\316\316\316\316\316\316' >bin
run 0 pack -o g2.bin --part-size 5 --pid 2 --flash-size 4MB 0 bin
same g2.bin "$fix/2/dfu.bin"
has err "part size 5 is not a multiple of 4096"
export ESP_DFU_PART_SIZE=5
run 0 pack -o g2e.bin --pid 0x0002 --flash-size 4MB 0 bin
same g2e.bin "$fix/2/dfu.bin"
# --part-size wins over the environment
export ESP_DFU_PART_SIZE=3
run 0 pack -o g2p.bin --part-size 0x5 --pid 2 --flash-size 4MB 0 bin
same g2p.bin "$fix/2/dfu.bin"
unset ESP_DFU_PART_SIZE

# the packed image passes inspect, and its file mode is the umask's, not mkstemp's 0600
run 0 inspect g1.bin
mode=$(printf '%o' $((0666 & ~$(umask))))
[ "$(stat -c %a g1.bin)" = "$mode" ] || fail "g1.bin mode is $(stat -c %a g1.bin), not $mode"

# ---- pack --flasher-args ----
mkdir -p proj/build/bootloader proj/build/partition_table
cp "$fix/1/1.bin" proj/build/bootloader/1.bin
cp "$fix/1/2.bin" proj/build/partition_table/2.bin
cp "$fix/1/3.bin" proj/build/3.bin
cat >proj/build/flasher_args.json <<'EOF'
{
    "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "4MB", "--flash_freq", "80m" ],
    "flash_settings" : { "flash_mode": "dio", "flash_size": "4MB", "flash_freq": "80m" },
    "flash_files" : {
        "0x1000" : "bootloader/1.bin",
        "0x8000" : "partition_table/2.bin",
        "0x10000" : "3.bin"
    },
    "extra_esptool_args" : { "after": "hard_reset", "before": "default_reset", "chip": "esp32s2" }
}
EOF
run 0 pack -o fa.bin --flasher-args proj/build/flasher_args.json
same fa.bin "$fix/1/dfu.bin"
# command-line options override the JSON
run 0 pack -o fa8.bin --flasher-args proj/build/flasher_args.json --flash-size 8MB --chip esp32s3
run 0 inspect --json fa8.bin
json '.chip == "esp32s3" and .pid == 9 and .flash_size == 8388608'
# and the JSON's files override command-line pairs at the same address (mkdfu's order)
run 0 pack -o fa2.bin 0x1000 "$fix/1/3.bin" --flasher-args proj/build/flasher_args.json
same fa2.bin "$fix/1/dfu.bin"

sed 's/"flash_size": "4MB"/"flash_size": "detect"/' proj/build/flasher_args.json >proj/build/detect.json
run 1 pack -o x.bin --flasher-args proj/build/detect.json
has err "flash_settings.flash_size \"detect\""
has err "[pack-flash-size]"
sed 's/"esp32s2"/"esp32"/' proj/build/flasher_args.json >proj/build/esp32.json
run 1 pack -o x.bin --flasher-args proj/build/esp32.json
has err "[pack-chip]"
echo '{"flash_files": [' >proj/build/broken.json
run 1 pack -o x.bin --flasher-args proj/build/broken.json
has err "[pack-args]"
run 1 pack -o x.bin --flasher-args proj/build/none.json
has err "[pack-args]"

# ---- pack refusals; a failed pack leaves OUT as it was ----
echo "previous image" >keep.bin
cp keep.bin keep.orig

run 1 pack -o keep.bin --chip esp32s2 0x1000 missing.bin
has err "espdfuctl: pack: \"missing.bin\": No such file or directory [pack-input]"
same keep.bin keep.orig

long=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bin
cp "$fix/1/1.bin" "$long"
run 1 pack -o keep.bin --chip esp32s2 0x1000 "$long"
has err "longer than the 63"
has err "[pack-name]"
same keep.bin keep.orig

run 2 pack -o keep.bin --chip esp32s2 --flash-size 3MB 0x1000 "$fix/1/1.bin"
has err "--flash-size \"3MB\""
has err "[pack-flash-size]"

run 1 pack -o keep.bin --chip esp32s2 0x1000 "$fix/1/2.bin" 0x1400 "$fix/1/1.bin"
has err "\"2.bin\" at 0x1000..0x1800 overlaps \"1.bin\" at 0x1400"
has err "[entry-overlap]"
same keep.bin keep.orig

run 1 pack -o keep.bin --chip esp32s2 0x1ffc00 "$fix/1/2.bin"
has err "[entry-range]"
run 1 pack -o keep.bin --chip esp32s2 0x1000 empty.bin
has err "[pack-input]"
run 1 pack -o keep.bin --chip esp32s2 0x1000 .
has err "[pack-input]"
same keep.bin keep.orig
# the write itself fails (OUT is a directory): no temporary file stays behind
mkdir outdir
run 1 pack -o outdir --chip esp32s2 0x1000 "$fix/1/1.bin"
has err "espdfuctl: outdir: cannot write: Is a directory [image-io]"
for t in .keep.bin.* .outdir.*; do
    [ ! -e "$t" ] || fail "a temporary file was left behind: $t"
done

# ---- pack usage errors ----
run 2 pack --chip esp32s2 0x1000 "$fix/1/1.bin"
has err "no output"
run 2 pack -o x.bin 0x1000 "$fix/1/1.bin"
has err "which chip?"
run 2 pack -o x.bin --chip esp32 0x1000 "$fix/1/1.bin"
has err "[pack-chip]"
run 2 pack -o x.bin --pid 0x1234 0x1000 "$fix/1/1.bin"
has err "[pack-chip]"
run 2 pack -o x.bin --chip esp32s2 --pid 2 0x1000 "$fix/1/1.bin"
run 2 pack -o x.bin --chip esp32s2 0x1000
run 2 pack -o x.bin --chip esp32s2 010 "$fix/1/1.bin"
has err "address \"010\""
run 2 pack -o x.bin --chip esp32s2 --part-size 0 0x1000 "$fix/1/1.bin"
export ESP_DFU_PART_SIZE=abc
run 2 pack -o x.bin --chip esp32s2 0x1000 "$fix/1/1.bin"
has err "ESP_DFU_PART_SIZE"
unset ESP_DFU_PART_SIZE
run 2 pack -o x.bin --chip esp32s2
has err "nothing to pack"
[ ! -e x.bin ] || fail "x.bin was written by a failed pack"

if [ "$failures" -ne 0 ]; then
    echo "test-cli-image: $failures failure(s)" >&2
    exit 1
fi
echo "test-cli-image: all checks passed"
