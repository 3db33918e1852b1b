#!/bin/sh
# Fails when any tracked C source differs from what clang-format would write.
set -eu
cf="$1"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
[ -n "$files" ] || exit 0
# shellcheck disable=SC2086
"$cf" --dry-run --Werror $files
echo "clang-format: $(echo "$files" | wc -l) files clean"
