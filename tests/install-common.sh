# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# Sourced by test-install.sh, test-units.sh and test-udev-rules.sh: a private
# temporary directory, and `cmake --install` of the build tree into it.

# The directory pkg-config names for the prefix /usr (Debian 12:
# /lib/systemd/system, /lib/udev, /usr/lib/sysusers.d), as
# cmake/install-system.cmake chooses it.
pc_dir()
{
    local module=$1 variable=$2 fallback=$3 value

    value=$(pkg-config --variable="$variable" "$module" 2>/dev/null || true)
    printf '%s\n' "${value:-/usr/$fallback}"
}

# A temporary directory, removed on exit (kept with KEEP_TMP=1 to look at it).
make_tmp()
{
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/espdfu-$1.XXXXXX")
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "keeping $tmp"
    else
        trap 'rm -rf "$tmp"' EXIT
    fi
}

# install_tree BUILD DESTDIR PREFIX: the build tree's install; its output is
# shown only when it fails.
install_tree()
{
    local build=$1 destdir=$2 prefix=$3 log

    log=$(mktemp "${TMPDIR:-/tmp}/espdfu-install-log.XXXXXX")
    if ! DESTDIR=$destdir cmake --install "$build" --prefix "$prefix" >"$log" 2>&1; then
        cat "$log"
        rm -f "$log"
        echo "FAIL: cmake --install $build --prefix $prefix (DESTDIR=$destdir)"
        exit 1
    fi
    rm -f "$log"
}

fail()
{
    echo "FAIL: $*"
    exit 1
}
