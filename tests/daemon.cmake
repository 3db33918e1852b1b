# The daemon (daemon/*.c except the engine and the USB edge): unit tests of its
# pure parts, each linking espdfud-lib; test-manager drives the core on a real loop
# with a fake worker and fake device events.
foreach(t config job image-cache devices worker store manager server)
  espdfu_unit_test(test-${t} SOURCES test-${t}.c LIBS espdfud-lib)
  set_tests_properties(test-${t} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                       LABELS "daemon")
endforeach()

# The real espdfud binary, no boards needed: --check-config and refusing to start.
add_test(NAME e2e-daemon-check-config
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/e2e-daemon-check-config.sh $<TARGET_FILE:espdfud>
                 ${CMAKE_CURRENT_SOURCE_DIR}/fixtures ${CMAKE_CURRENT_BINARY_DIR}/e2e-check-config.d)
set_tests_properties(e2e-daemon-check-config PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                     LABELS "daemon")

# The real espdfud binary against emulated boards (tests/emu/, docs/emulator.md).
# One binary, one CTest test per case.
if(ESPDFU_EMULATOR_TESTS)
  add_executable(e2e-daemon e2e-daemon.c)
  target_link_libraries(e2e-daemon PRIVATE espdfu-emu-lib)
  target_compile_definitions(e2e-daemon PRIVATE ESPDFUD="$<TARGET_FILE:espdfud>"
                             FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
  add_dependencies(e2e-daemon espdfud)
  foreach(case one eight coldplug runtime once-per-plug unplug error-status retry job-timeout
               sighup sigterm sigterm-hung hook reset)
    add_test(NAME e2e-daemon-${case} COMMAND e2e-daemon ${case})
    set_tests_properties(e2e-daemon-${case} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                         LABELS "daemon;usb" TIMEOUT 180)
  endforeach()
endif()

# The crash-safe job store (jobs.db) end to end: the real espdfud killed,
# restarted, starved of disk, given a damaged or an old-format history; the real
# espdfuctl reading the store offline. disk-full needs root (a tmpfs in a mount
# namespace of its own) and skips otherwise.
if(ESPDFU_EMULATOR_TESTS)
  add_executable(e2e-store e2e-store.c)
  target_link_libraries(e2e-store PRIVATE espdfu-emu-lib)
  target_compile_definitions(e2e-store PRIVATE ESPDFUD="$<TARGET_FILE:espdfud>"
                             ESPDFUCTL="$<TARGET_FILE:espdfuctl>"
                             FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
  add_dependencies(e2e-store espdfud espdfuctl)
  foreach(case kill-download kill-waiting once-per-plug-restart wait-expires retry-succeeds
               disk-full corrupt-db import-jsonl offline-csv)
    add_test(NAME e2e-store-${case} COMMAND e2e-store ${case})
    set_tests_properties(e2e-store-${case} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                         LABELS "daemon;usb;store" TIMEOUT 180 SKIP_RETURN_CODE 77)
  endforeach()
endif()
