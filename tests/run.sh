#!/bin/bash
# The test command (README.md): installs what is missing, builds everything with
# clang + ASan/UBSan (+ the libFuzzer targets), builds once more with gcc so both
# compilers stay warning-free, and runs the whole CTest suite.
#
#   tests/run.sh [CTEST ARGS...]      e.g. tests/run.sh -R image
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${ESPDFU_TEST_BUILD:-$top/build-test}
jobs=$(nproc 2>/dev/null || echo 2)

"$top/tests/install-deps.sh"

# gcc -O2 (what a package builds), warnings as errors: a compile check only;
# optimisation lets gcc see more (format truncation, maybe-uninitialized).
cmake -S "$top" -B "$build-gcc" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBUILD_TESTING=ON >/dev/null
cmake --build "$build-gcc" -j"$jobs"
# gcc without optimisation: every build type must link (a missing -lm hid there once).
cmake -S "$top" -B "$build-gcc-O0" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug \
    -DBUILD_TESTING=ON >/dev/null
cmake --build "$build-gcc-O0" -j"$jobs"

# clang with ASan + UBSan (no optimisation) and the fuzzers: this is what the tests run.
cmake -S "$top" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
    -DESPDFU_SANITIZE=ON -DESPDFU_FUZZ=ON >/dev/null
cmake --build "$build" -j"$jobs"
cd "$build"
exec ctest --output-on-failure --timeout 600 -j"$jobs" "$@"
