# The control protocol: the wire codec (protocol/wire*.c) and the daemon's
# server (daemon/server*.c) against emulated boards.

# Unit tests of the codec; links only the core library.
espdfu_unit_test(test-wire SOURCES test-wire.c LIBS espdfu-core)
set_tests_properties(test-wire PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}" LABELS "server")
target_include_directories(test-wire PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# The real espdfud against emulated boards, spoken to in raw protocol lines.
if(ESPDFU_EMULATOR_TESTS)
  add_executable(e2e-server e2e-server.c)
  target_link_libraries(e2e-server PRIVATE espdfu-emu-lib espdfu-core)
  target_compile_definitions(e2e-server PRIVATE ESPDFUD="$<TARGET_FILE:espdfud>"
                             FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
  add_dependencies(e2e-server espdfud)
  foreach(case methods flash cancel permission many slow-subscriber garbage)
    add_test(NAME e2e-server-${case} COMMAND e2e-server ${case})
    set_tests_properties(e2e-server-${case} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                         LABELS "server;usb" TIMEOUT 120)
  endforeach()
endif()
