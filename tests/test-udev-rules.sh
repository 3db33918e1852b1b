#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test-udev-rules BUILD: the installed rules, evaluated by udev itself.
#
# systemd 252 has no `udevadm verify`, and `udevadm test` takes the rules only
# from the system's directories and a device only from /sys. So, as root and
# without touching the host:
#   - a private mount namespace (unshare -m) bind-mounts the installed rules
#     over /etc/udev/rules.d (they run with the distribution's own rules, as
#     on a real system: 50-udev-default.rules sets usb_device nodes 0664
#     first) and an /etc/group that has espdfu;
#   - umockdev-run fakes /sys with a board (303a:0002) whose ROM serial port
#     is ttyACM0, a board with another PID (303a:1001, USB-Serial/JTAG), and a
#     hub of another vendor;
#   - `udevadm test --action=add` runs every rule on each device and prints
#     what it decided: parse errors, GROUP, MODE, properties and tags.
# Skipped (77) without unshare's privileges, udevadm or umockdev-run.
set -eu

build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install-common.sh
. "$here/install-common.sh"

skip()
{
    echo "SKIP: $*"
    exit 77
}
command -v udevadm >/dev/null || skip "no udevadm (package udev)"
command -v umockdev-run >/dev/null || skip "no umockdev-run (package umockdev)"
[[ -d /etc/udev/rules.d ]] || skip "no /etc/udev/rules.d to mount over"
unshare=""
for u in "unshare -m" "unshare -rm"; do
    if $u true 2>/dev/null; then
        unshare=$u
        break
    fi
done
[[ -n $unshare ]] || skip "cannot create a mount namespace"

make_tmp udev
dest=$tmp/dest
install_tree "$build" "$dest" /usr
rules=$dest$(pc_dir udev udevdir lib/udev)/rules.d
[[ -f $rules/70-espdfud.rules ]] || fail "70-espdfud.rules not installed in $rules"

cp /etc/group "$tmp/group"
grep -q '^espdfu:' "$tmp/group" || echo "espdfu:x:987:" >>"$tmp/group"
gid=$(sed -n 's/^espdfu:[^:]*:\([0-9]*\):.*/\1/p' "$tmp/group")

usb=/devices/pci0000:00/0000:00:14.0/usb1
cat >"$tmp/devices.umockdev" <<EOF
P: $usb/1-3/1-3:1.0/tty/ttyACM0
N: ttyACM0
E: DEVNAME=/dev/ttyACM0
E: SUBSYSTEM=tty
E: MAJOR=166
E: MINOR=0

P: $usb/1-3/1-3:1.0
E: DEVTYPE=usb_interface
E: SUBSYSTEM=usb
E: INTERFACE=2/2/0
A: bInterfaceClass=02
A: bInterfaceNumber=00

P: $usb/1-3
N: bus/usb/001/004
E: DEVNAME=/dev/bus/usb/001/004
E: DEVTYPE=usb_device
E: SUBSYSTEM=usb
E: BUSNUM=001
E: DEVNUM=004
E: MAJOR=189
E: MINOR=3
E: PRODUCT=303a/2/723
A: idVendor=303a
A: idProduct=0002
A: busnum=1
A: devnum=4

P: $usb/1-4
N: bus/usb/001/005
E: DEVNAME=/dev/bus/usb/001/005
E: DEVTYPE=usb_device
E: SUBSYSTEM=usb
E: BUSNUM=001
E: DEVNUM=005
E: MAJOR=189
E: MINOR=4
E: PRODUCT=303a/1001/101
A: idVendor=303a
A: idProduct=1001
A: busnum=1
A: devnum=5

P: $usb
N: bus/usb/001/001
E: DEVNAME=/dev/bus/usb/001/001
E: DEVTYPE=usb_device
E: SUBSYSTEM=usb
E: BUSNUM=001
E: DEVNUM=001
E: MAJOR=189
E: MINOR=0
A: idVendor=1d6b
A: idProduct=0002
A: busnum=1
A: devnum=1

P: /devices/pci0000:00/0000:00:14.0
E: SUBSYSTEM=pci
EOF

# run_udev RULESDIR SYSPATH: udevadm test's decisions for one device.
run_udev()
{
    # shellcheck disable=SC2016 # expanded by the inner sh
    $unshare sh -c '
        mount --bind "$1" /etc/udev/rules.d && mount --bind "$2" /etc/group &&
        exec umockdev-run -d "$3" -- udevadm test --action=add "/sys$4"' \
        udev-test "$1" "$tmp/group" "$tmp/devices.umockdev" "$2" 2>&1
}

# The installed rules alone, then with the opt-in autostart rule copied in, as
# its instructions say.
mkdir -p "$tmp/rules" "$tmp/rules-autostart"
cp "$rules"/*.rules "$tmp/rules/"
cp "$rules"/*.rules "$dest/usr/share/doc/espdfud/examples/71-espdfud-autostart.rules" \
    "$tmp/rules-autostart/"

for set in rules rules-autostart; do
    out=$(run_udev "$tmp/$set" "$usb/1-3") || fail "udevadm test failed: $out"
    # Parse problems are logged as FILE:LINE MESSAGE while the rules load.
    if grep -E '^/etc/udev/rules\.d/[^ ]*:[0-9]+ ' <<<"$out"; then
        fail "udev reports problems in the rules ($set)"
    fi
    grep -Eq "70-espdfud\.rules:[0-9]+ GROUP $gid\$" <<<"$out" || fail "board: no GROUP espdfu ($set)"
    # The last MODE wins: ours, after 50-udev-default's 0664.
    mode=$(grep -E '^1-3: .*rules:[0-9]+ MODE ' <<<"$out" | tail -n 1)
    [[ $mode == *"70-espdfud.rules:"*" MODE 0660" ]] || fail "board: last MODE is '$mode' ($set)"
    grep -qx 'ID_MM_DEVICE_IGNORE=1' <<<"$out" || fail "board: no ID_MM_DEVICE_IGNORE ($set)"
    if [[ $set == rules ]]; then
        ! grep -q '^SYSTEMD_WANTS=' <<<"$out" || fail "board: SYSTEMD_WANTS without the opt-in rule"
    else
        grep -qx 'SYSTEMD_WANTS=espdfud.service' <<<"$out" || fail "board: no SYSTEMD_WANTS (opt-in)"
        grep -Eq '^CURRENT_TAGS=.*:systemd:' <<<"$out" || fail "board: no systemd tag (opt-in)"
    fi
    echo "ok: $set: 303a:0002 gets group espdfu ($gid), mode 0660, ModemManager ignore"
done

# The ROM's serial port: ModemManager keeps off it.
out=$(run_udev "$tmp/rules" "$usb/1-3/1-3:1.0/tty/ttyACM0") || fail "udevadm test failed: $out"
grep -qx 'ID_MM_DEVICE_IGNORE=1' <<<"$out" || fail "ttyACM0 of the board: no ID_MM_DEVICE_IGNORE"
echo "ok: the board's ttyACM0 is ignored by ModemManager"

# Other devices are untouched, also with the opt-in rule.
for dev in "$usb/1-4" "$usb"; do
    out=$(run_udev "$tmp/rules-autostart" "$dev") || fail "udevadm test failed: $out"
    if grep -E 'espdfud[^ ]*\.rules:[0-9]+ |^ID_MM_DEVICE_IGNORE=|^SYSTEMD_WANTS=' <<<"$out"; then
        fail "${dev##*/}: touched by espdfud's rules"
    fi
done
echo "ok: 303a:1001 and the root hub are untouched"
