# The control protocol: the wire codec (protocol/wire*.c) and the daemon's
# server (daemon/server*.c) against emulated boards.

# Unit tests of the codec; links only the core library.
espdfu_unit_test(test-wire SOURCES test-wire.c LIBS espdfu-core)
set_tests_properties(test-wire PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}" LABELS "server")
target_include_directories(test-wire PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# The real espdfud against emulated boards, spoken to in raw protocol lines.
# e2e-hostile: clients that try to stall the daemon's loop; another client's
# status must still be answered within 1 s. Its root-only cases exit 77 otherwise.
if(ESPDFU_EMULATOR_TESTS)
  set(e2e-server_CASES methods flash cancel permission many slow-subscriber garbage)
  set(e2e-hostile_CASES half-lines trickle fifo-reload blocking-image control-chars pipelining-fair
                        many-images hang-retry unplug-block)
  foreach(prog e2e-server e2e-hostile)
    add_executable(${prog} ${prog}.c)
    target_link_libraries(${prog} PRIVATE espdfu-emu-lib espdfu-core)
    target_compile_definitions(${prog} PRIVATE ESPDFUD="$<TARGET_FILE:espdfud>"
                               FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
    add_dependencies(${prog} espdfud)
    foreach(case ${${prog}_CASES})
      add_test(NAME ${prog}-${case} COMMAND ${prog} ${case})
      set_tests_properties(${prog}-${case} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                           LABELS "server;usb" TIMEOUT 120 SKIP_RETURN_CODE 77)
    endforeach()
  endforeach()
endif()
