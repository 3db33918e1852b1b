# libFuzzer targets (-DESPDFU_FUZZ=ON, clang only). Each runs as a ctest test for
# a bounded time on a corpus in the build tree seeded from the golden images;
# a crash, a sanitizer report or a leak fails the test.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "ESPDFU_FUZZ needs clang (libFuzzer); fuzz targets skipped")
  return()
endif()

set(ESPDFU_FUZZ_SECONDS 60 CACHE STRING "How long each fuzz test runs under ctest")

# The code under test needs coverage instrumentation, which the shared core
# library does not carry: build the same sources again with it. The sanitizers
# come from add_compile_options() when ESPDFU_SANITIZE is on; add them here
# otherwise, since fuzzing without them finds only crashes.
set(fuzz_flags -fsanitize=fuzzer-no-link)
if(NOT ESPDFU_SANITIZE)
  list(APPEND fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=all)
endif()
get_target_property(core_dirs espdfu-core INTERFACE_INCLUDE_DIRECTORIES)
get_target_property(core_sources espdfu-core SOURCES) # absolute paths
add_library(espdfu-core-fuzz STATIC ${core_sources})
target_include_directories(espdfu-core-fuzz PUBLIC ${core_dirs})
target_link_libraries(espdfu-core-fuzz PUBLIC PkgConfig::NETTLE PkgConfig::ZLIB PkgConfig::JSONC)
target_compile_options(espdfu-core-fuzz PRIVATE ${fuzz_flags})

# fuzz_test(NAME SOURCE SEED...): the target, its corpus, its ctest entry.
function(fuzz_test name source)
  add_executable(${name} ${source})
  target_compile_options(${name} PRIVATE ${fuzz_flags})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer ${fuzz_flags})
  target_link_libraries(${name} PRIVATE espdfu-core-fuzz)

  set(corpus ${CMAKE_CURRENT_BINARY_DIR}/${name}-corpus)
  file(MAKE_DIRECTORY ${corpus} ${CMAKE_CURRENT_BINARY_DIR}/${name}-artifacts)
  set(i 0)
  foreach(seed ${ARGN})
    math(EXPR i "${i} + 1")
    file(COPY_FILE ${seed} ${corpus}/seed-${i} ONLY_IF_DIFFERENT)
  endforeach()

  add_test(NAME ${name}
           COMMAND ${name} -max_total_time=${ESPDFU_FUZZ_SECONDS} -timeout=10
                   -rss_limit_mb=2048 -print_final_stats=1
                   -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/${name}-artifacts/
                   ${corpus})
  math(EXPR limit "${ESPDFU_FUZZ_SECONDS} + 120")
  set_tests_properties(${name} PROPERTIES TIMEOUT ${limit} LABELS "fuzz"
                       ENVIRONMENT "${ESPDFU_SANITIZER_ENV}")
endfunction()

fuzz_test(fuzz-image fuzz-image.c
          ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/mkdfu/1/dfu.bin
          ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/mkdfu/2/dfu.bin)

# The wire codec: framer, strict request parser, client-side reader. 30 s is
# plenty for a grammar this small. Seeds are protocol lines (the first byte
# also picks the size of the pieces fed to the framer).
set(wire_seeds)
foreach(seed status flash-jobs hello-cancel replies)
  list(APPEND wire_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/wire/${seed}.json)
endforeach()
set(fuzz_seconds_saved ${ESPDFU_FUZZ_SECONDS})
if(ESPDFU_FUZZ_SECONDS GREATER 30)
  set(ESPDFU_FUZZ_SECONDS 30) # a normal variable: shadows the cache entry for this call
endif()
fuzz_test(fuzz-wire fuzz-wire.c ${wire_seeds})
set(ESPDFU_FUZZ_SECONDS ${fuzz_seconds_saved})
