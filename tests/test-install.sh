#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test-install BUILD: `cmake --install BUILD --prefix /usr` into a temporary
# DESTDIR lays out exactly the files a Debian package would hold, where
# pkg-config says; the programs run; the man pages render without a warning;
# the bash completion completes. Then the same tree installed with another
# prefix (/usr/local) moves every system directory under it, and a second
# install keeps an edited configuration.
set -eu

build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install-common.sh
. "$here/install-common.sh"

make_tmp install
dest=$tmp/usr-prefix
install_tree "$build" "$dest" /usr

unitdir=$(pc_dir systemd systemdsystemunitdir lib/systemd/system)
sysusersdir=$(pc_dir systemd sysusersdir lib/sysusers.d)
udevdir=$(pc_dir udev udevdir lib/udev)
completions=/usr/share/bash-completion/completions
echo "pkg-config: units $unitdir, sysusers $sysusersdir, udev $udevdir"

# Every file, and nothing else. A new installed file belongs in this list.
expected=(
    /usr/sbin/espdfud
    /usr/bin/espdfuctl
    /usr/bin/espdfu-flash
    "$unitdir/espdfud.service"
    "$unitdir/espdfud.socket"
    "$sysusersdir/espdfud.conf"
    "$udevdir/rules.d/70-espdfud.rules"
    /etc/espdfud/espdfud.conf
    /usr/share/man/man8/espdfud.8
    /usr/share/man/man1/espdfuctl.1
    /usr/share/man/man5/espdfud.conf.5
    "$completions/espdfuctl"
    /usr/share/doc/espdfud/architecture.md
    /usr/share/doc/espdfud/configuration.md
    /usr/share/doc/espdfud/protocol.md
    /usr/share/doc/espdfud/image-format.md
    /usr/share/doc/espdfud/examples/espdfud.conf.example
    /usr/share/doc/espdfud/examples/71-espdfud-autostart.rules
)
[[ -f $here/../README.md ]] && expected+=(/usr/share/doc/espdfud/README.md)

printf '%s\n' "${expected[@]}" | sed 's|//*|/|g' | sort >"$tmp/expected"
(cd "$dest" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$tmp/installed"
if ! diff -u "$tmp/expected" "$tmp/installed"; then
    fail "the installed tree differs from the expected one (- missing, + unexpected)"
fi
echo "ok: $(wc -l <"$tmp/installed") files, as expected"

# The opt-in rule is only an example: installed as a rule it would be on.
[[ ! -e $dest$udevdir/rules.d/71-espdfud-autostart.rules ]] ||
    fail "71-espdfud-autostart.rules is opt-in, but installed as a rule"

# The programs: executable, and they run.
for prog in /usr/sbin/espdfud /usr/bin/espdfuctl /usr/bin/espdfu-flash; do
    [[ -x $dest$prog ]] || fail "$prog is not executable"
    "$dest$prog" --help >/dev/null || fail "$prog --help failed"
done
"$dest/usr/sbin/espdfud" --version | grep -q '^espdfud ' || fail "espdfud --version"

# The unit starts the installed daemon; the installed configuration is valid.
grep -qx 'ExecStart=/usr/sbin/espdfud' "$dest$unitdir/espdfud.service" ||
    fail "ExecStart is not /usr/sbin/espdfud"
"$dest/usr/sbin/espdfud" --check-config "$dest/etc/espdfud/espdfud.conf" >/dev/null ||
    fail "the installed espdfud.conf does not pass --check-config"
cmp -s "$dest/etc/espdfud/espdfud.conf" "$here/../daemon/espdfud.conf.example" ||
    fail "etc/espdfud/espdfud.conf is not daemon/espdfud.conf.example"

# Man pages: groff's every warning (-ww) and man-db's, as lintian checks them.
for page in man8/espdfud.8 man1/espdfuctl.1 man5/espdfud.conf.5; do
    file=$dest/usr/share/man/$page
    out=$(groff -man -Tutf8 -ww -z "$file" 2>&1) || fail "groff failed on $page: $out"
    [[ -z $out ]] || fail "groff warns about $page: $out"
    if command -v man >/dev/null; then
        out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
            man --warnings -E UTF-8 -l -Tutf8 -Z "$file" 2>&1 >/dev/null) || fail "man -l $page"
        [[ -z $out ]] || fail "man warns about $page: $out"
    fi
    ! grep -q '@[A-Z_]*@' "$file" || fail "$page has an unsubstituted @VARIABLE@"
done
echo "ok: man pages render without warnings"

# Completion: sourced alone, the function completes commands, options,
# values and files.
complete_words()
{
    bash --norc --noprofile -c '
        . "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
        _espdfuctl
        printf "%s\n" "${COMPREPLY[@]}"' complete "$dest$completions/espdfuctl" "$@" | sort | xargs
}
check_completion()
{
    local want=$1 got
    shift
    got=$(complete_words "$@")
    [[ $got == "$want" ]] || fail "completing '$*': got '$got', want '$want'"
}
touch "$tmp/image-a.bin" "$tmp/image-b.bin"
check_completion "flash" espdfuctl fl
check_completion "job jobs" espdfuctl --socket /x/y.sock jo
check_completion "--chip" espdfuctl flash "$tmp/image-a.bin" --ch
check_completion "esp32s2 esp32s3 esp32s31" espdfuctl flash --chip esp32s
check_completion "active" espdfuctl jobs --state ac
check_completion "$tmp/image-a.bin $tmp/image-b.bin" espdfuctl inspect "$tmp/image-"
check_completion "$tmp/image-a.bin $tmp/image-b.bin" espdfuctl flash "$tmp/image-"
check_completion "--flash-size --flasher-args" espdfuctl pack -o out.bin --fl
# Where bash-completion's loader looks it up by the command's name.
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
    XDG_DATA_DIRS=$dest/usr/share bash --norc --noprofile -c '
        . /usr/share/bash-completion/bash_completion
        __load_completion espdfuctl && complete -p espdfuctl' | grep -q -- '-F _espdfuctl' ||
        fail "bash-completion does not load completions/espdfuctl"
fi
echo "ok: bash completion"

# Another prefix: every system directory moves under it (systemd, udev and
# sysusers all search /usr/local/lib); the configuration goes to PREFIX/etc.
local_dest=$tmp/local-prefix
install_tree "$build" "$local_dest" /usr/local
for f in /usr/local/sbin/espdfud /usr/local/lib/systemd/system/espdfud.service \
    /usr/local/lib/systemd/system/espdfud.socket /usr/local/lib/sysusers.d/espdfud.conf \
    /usr/local/lib/udev/rules.d/70-espdfud.rules /usr/local/etc/espdfud/espdfud.conf \
    /usr/local/share/man/man8/espdfud.8 /usr/local/share/bash-completion/completions/espdfuctl; do
    [[ -f $local_dest$f ]] || fail "prefix /usr/local: $f missing"
done
outside=$(cd "$local_dest" && find . -type f ! -path './usr/local/*')
[[ -z $outside ]] || fail "prefix /usr/local installed outside it: $outside"
grep -qx 'ExecStart=/usr/local/sbin/espdfud' "$local_dest/usr/local/lib/systemd/system/espdfud.service" ||
    fail "prefix /usr/local: ExecStart is not /usr/local/sbin/espdfud"
echo "ok: prefix /usr/local"

# An administrator's configuration survives the next install.
echo "# edited" >>"$dest/etc/espdfud/espdfud.conf"
install_tree "$build" "$dest" /usr
tail -n 1 "$dest/etc/espdfud/espdfud.conf" | grep -qx '# edited' ||
    fail "a second install overwrote etc/espdfud/espdfud.conf"
echo "ok: an existing espdfud.conf is kept"
