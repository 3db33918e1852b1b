# espdfuctl: its pure formatting helpers, linked alone.
espdfu_unit_test(test-client-format SOURCES test-client-format.c LIBS espdfuctl-format)
set_tests_properties(test-client-format PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                     LABELS "client")

# The real espdfuctl against the real espdfud under emulated boards
# (tests/emu/, docs/emulator.md). One binary, one CTest test per case.
if(ESPDFU_EMULATOR_TESTS)
  add_executable(e2e-client e2e-client.c)
  target_link_libraries(e2e-client PRIVATE espdfu-emu-lib)
  target_compile_definitions(e2e-client PRIVATE ESPDFUD="$<TARGET_FILE:espdfud>"
                             ESPDFUCTL="$<TARGET_FILE:espdfuctl>"
                             FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
  add_dependencies(e2e-client espdfud espdfuctl)
  foreach(case flash-wait history flash-fail watch-json cancel unprivileged unreadable errors empty-port
               socket-activation)
    add_test(NAME e2e-client-${case} COMMAND e2e-client ${case})
    set_tests_properties(e2e-client-${case} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                         LABELS "client;usb" TIMEOUT 60)
  endforeach()
endif()
