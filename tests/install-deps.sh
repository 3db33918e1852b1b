#!/bin/bash
# Install the Debian packages in tests/debian-packages.txt that are missing
# (as root, or through sudo). Idempotent; quiet when nothing is missing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

missing=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$pkg")
done <"$top/tests/debian-packages.txt"
((${#missing[@]})) || exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
