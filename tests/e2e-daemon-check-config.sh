#!/bin/sh
# espdfud --check-config, and the daemon refusing to start on an invalid
# configuration: exit codes, and error lines that name the file, the line, the
# key, the rule, the image and the image's error.
#
#   e2e-daemon-check-config.sh ESPDFUD FIXTURES_DIR WORK_DIR
set -eu
espdfud=$1
fixtures=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
good="$fixtures/mkdfu/1/dfu.bin"
broken="$work/broken.bin"
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# One byte flipped inside the archive: the suffix CRC no longer matches.
cp "$good" "$broken"
printf '\377' | dd of="$broken" bs=1 seek=300 conv=notrunc 2>/dev/null

cat >"$work/good.conf" <<CONF
[daemon]
workers = 8

[rule factory]
chip = esp32s2
image = $good
CONF

cat >"$work/broken.conf" <<CONF
[daemon]
workers = 8

[rule factory]
chip = esp32s2
image = $broken
CONF

# A valid file: exit 0 and one summary line.
out=$("$espdfud" --check-config "$work/good.conf") || fail "good.conf: exit $?"
case "$out" in
"$work/good.conf: OK: 1 rule, 1 image, 8 workers, auto-flash on") ;;
*) fail "good.conf: unexpected summary: $out" ;;
esac

# The same, with --check-config=FILE.
"$espdfud" --check-config="$work/good.conf" >/dev/null || fail "--check-config=FILE: exit $?"

# A broken image: exit 1, the error names the rule, the file and the image error.
set +e
err=$("$espdfud" --check-config "$work/broken.conf" 2>&1 >/dev/null)
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "broken.conf: exit $rc, want 1"
case "$err" in
"$work/broken.conf:6: image: rule 'factory': $broken: "*"[crc-mismatch]") ;;
*) fail "broken.conf: unexpected error: $err" ;;
esac

# The daemon itself refuses to start with it, with the same line.
set +e
err=$("$espdfud" --config "$work/broken.conf" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "espdfud --config broken.conf: exit $rc, want 1"
case "$err" in
*"$work/broken.conf:6: image: rule 'factory': $broken: "*) ;;
*) fail "espdfud --config broken.conf: unexpected output: $err" ;;
esac

# A FIFO never blocks espdfud: as a rule's image and as the configuration itself it
# is refused at once with file and line (timeout turns a hang into a failure).
mkfifo "$work/image.fifo" "$work/conf.fifo"
cat >"$work/fifo.conf" <<CONF
[rule fifo]
image = $work/image.fifo
CONF
for mode in --check-config --config; do
    set +e
    err=$(timeout 5 "$espdfud" $mode "$work/fifo.conf" 2>&1 >/dev/null)
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$mode fifo.conf: exit $rc, want 1"
    case "$err" in
    *"$work/fifo.conf:2: image: rule 'fifo': $work/image.fifo: not a regular file"*) ;;
    *) fail "$mode fifo.conf: unexpected error: $err" ;;
    esac
done
set +e
err=$(timeout 5 "$espdfud" --check-config "$work/conf.fifo" 2>&1 >/dev/null)
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "conf.fifo: exit $rc, want 1"
case "$err" in
*"$work/conf.fifo: not a regular file"*) ;;
*) fail "conf.fifo: unexpected error: $err" ;;
esac

# An explicit file that does not exist is an error; so is a bad option.
set +e
"$espdfud" --check-config "$work/missing.conf" 2>/dev/null
rc=$?
"$espdfud" --no-such-option 2>/dev/null
rc2=$?
"$espdfud" --workers 0 --check-config "$work/good.conf" >/dev/null 2>&1
rc3=$?
set -e
[ "$rc" -eq 1 ] || fail "missing.conf: exit $rc, want 1"
[ "$rc2" -eq 2 ] || fail "bad option: exit $rc2, want 2"
[ "$rc3" -eq 2 ] || fail "--workers 0: exit $rc3, want 2"

# Command-line overrides show in the summary.
out=$("$espdfud" --workers 3 --check-config "$work/good.conf")
case "$out" in
*", 3 workers, "*) ;;
*) fail "--workers 3: $out" ;;
esac

"$espdfud" --help | grep -q -- "--check-config" || fail "--help"
"$espdfud" --version | grep -q "^espdfud " || fail "--version"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
rm -rf "$work"
echo "check-config: all passed"
