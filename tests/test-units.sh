#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test-units BUILD: the installed systemd units pass `systemd-analyze verify`,
# the service's `systemd-analyze security` exposure is 1.5 or lower, the
# sysusers.d entry creates the user the service runs as, and the socket, the
# service and the daemon agree on the socket's path and group.
#
# systemd is not PID 1 here (a container, a build host), so everything runs
# offline against a root directory: the DESTDIR of an install with prefix /usr.
# `systemd-analyze verify --root=ROOT` resolves unit names, Exec paths and
# dependencies inside ROOT, so ROOT also gets what a real system would have
# there (the workaround, nothing of ours is changed):
#   - the host's *.target units (sysinit.target, sockets.target, ... which the
#     default dependencies need);
#   - the host's /bin/kill, for ExecReload= (asserting the host has it).
# Documentation=man:... is checked by running man(1) on the host, so MANPATH
# points it at the installed man pages.
set -eu

build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install-common.sh
. "$here/install-common.sh"

command -v systemd-analyze >/dev/null || {
    echo "SKIP: no systemd-analyze"
    exit 77
}

make_tmp units
root=$tmp/root
install_tree "$build" "$root" /usr
unitdir=$(pc_dir systemd systemdsystemunitdir lib/systemd/system)
sysusersdir=$(pc_dir systemd sysusersdir lib/sysusers.d)
service=$root$unitdir/espdfud.service
socket=$root$unitdir/espdfud.socket
[[ -f $service && -f $socket ]] || fail "no units in $unitdir"

# The root: the host's targets and the programs the unit names besides ours.
mkdir -p "$root/usr/lib/systemd/system"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    [[ -d $dir ]] && find "$dir" -maxdepth 1 -name '*.target' -exec cp -n {} "$root/usr/lib/systemd/system/" \;
done
sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$service" | sort -u | while read -r exe; do
    [[ -e $root$exe ]] && continue
    [[ -x $exe ]] || fail "$exe (in espdfud.service) is not on this system"
    mkdir -p "$root$(dirname "$exe")"
    cp "$exe" "$root$exe"
done

# verify: any output is a finding (unknown keys are only warnings, exit 0).
out=$(MANPATH=$root/usr/share/man SYSTEMD_LOG_LEVEL=notice \
    systemd-analyze verify --root="$root" espdfud.service espdfud.socket 2>&1) ||
    fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify reports: $out"
echo "ok: systemd-analyze verify espdfud.service espdfud.socket"

# security: the installed service's overall exposure, at most 1.5.
out=$(systemd-analyze security --offline=true --root="$root" --no-pager espdfud.service 2>&1) ||
    fail "systemd-analyze security: $out"
line=$(grep 'Overall exposure level for espdfud.service' <<<"$out") || fail "no score in: $out"
echo "$line"
# What still counts against it, for the log.
grep '✗' <<<"$out" | sed 's/  */ /g' || true
score=${line##*espdfud.service: }
score=${score%% *}
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.5) }' ||
    fail "exposure $score is above 1.5"
echo "ok: exposure $score <= 1.5"

# sysusers: the entry creates the user and group the service runs as.
if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --root="$root" >/dev/null 2>&1 || fail "systemd-sysusers --root failed"
    entry=$(grep '^espdfu:' "$root/etc/passwd") || fail "sysusers created no user espdfu"
    IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
    ((uid > 0 && uid < 1000)) || fail "espdfu is not a system user: $entry"
    [[ $home == /var/lib/espdfud ]] || fail "espdfu's home is $home"
    [[ $shell == */nologin ]] || fail "espdfu's shell is $shell"
    grep -q "^espdfu:x:$gid:" "$root/etc/group" || fail "no group espdfu with gid $gid"
    echo "ok: sysusers.d/espdfud.conf creates espdfu ($uid:$gid, $home, $shell)"
else
    grep -q '^u  *espdfu ' "$root$sysusersdir/espdfud.conf" || fail "no 'u espdfu' in sysusers.d"
fi

# Coherence: one path and one group in the socket, the service and the daemon.
get()
{
    sed -n "s/^$1=//p" "$2"
}
[[ $(get ListenStream "$socket") == /run/espdfud/espdfud.sock ]] ||
    fail "ListenStream is not the daemon's default socket"
[[ $(get RuntimeDirectory "$service") == espdfud ]] || fail "RuntimeDirectory is not espdfud"
[[ $(get RuntimeDirectoryPreserve "$service") == yes ]] ||
    fail "RuntimeDirectoryPreserve=yes is needed: stopping the service would remove the socket"
[[ $(get SocketGroup "$socket") == espdfu && $(get Group "$service") == espdfu ]] ||
    fail "the socket's and the service's group are not espdfu"
[[ $(get SocketMode "$socket") == 0660 ]] || fail "SocketMode is not 0660"
"$root/usr/sbin/espdfud" --help | grep -q '/run/espdfud/espdfud.sock' ||
    fail "espdfud's default socket is not /run/espdfud/espdfud.sock"
echo "ok: socket and service agree"
