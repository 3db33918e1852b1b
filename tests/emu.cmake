# The emulated boards (tests/emu/, docs/emulator.md) and the USB tests held to
# dfu-util. umockdev is REQUIRED here: without it the configure fails loudly
# instead of the USB tests vanishing (-DESPDFU_EMULATOR_TESTS=OFF skips them
# on purpose).
pkg_check_modules(GLIB REQUIRED IMPORTED_TARGET glib-2.0>=2.68 gio-2.0 gio-unix-2.0)
pkg_check_modules(UMOCKDEV REQUIRED IMPORTED_TARGET umockdev-1.0>=0.17)
# Children get LD_PRELOAD=libumockdev-preload.so.0 (package umockdev): make sure it is there.
find_library(UMOCKDEV_PRELOAD NAMES libumockdev-preload.so.0 umockdev-preload REQUIRED)
find_program(DFU_UTIL NAMES dfu-util)
if(NOT DFU_UTIL)
  # Not fatal for the build; the dfu-util tests then fail with "dfu-util not found".
  set(DFU_UTIL dfu-util)
endif()

# The per-process uevent socket names (emu-shim.c). Loaded into programs built
# without sanitizers, so it is built without them too.
add_library(espdfu-emu-shim SHARED emu/emu-shim.c)
target_compile_options(espdfu-emu-shim PRIVATE -fno-sanitize=all)
target_link_options(espdfu-emu-shim PRIVATE -fno-sanitize=all)
target_link_libraries(espdfu-emu-shim PRIVATE ${CMAKE_DL_LIBS})

# The emulator library. dfu-model.c (the ROM's DFU state machine) needs
# dfu/dfu.h for its enums and image_check_archive() from espdfu-core.
add_library(espdfu-emu-lib STATIC
  emu/emu.c
  emu/emu-config.c
  emu/emu-control.c
  emu/emu-desc.c
  emu/emu-ioctl.c
  emu/emu-spawn.c
  emu/emu-uevent.c
  emu/emu-usbdevfs.c
  emu/dfu-model.c
)
target_include_directories(espdfu-emu-lib PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/emu
                           PRIVATE ${CMAKE_SOURCE_DIR}/dfu)
target_link_libraries(espdfu-emu-lib PUBLIC espdfu-core PkgConfig::UMOCKDEV PkgConfig::GLIB
                      PkgConfig::JSONC)
target_compile_definitions(espdfu-emu-lib PRIVATE
  ESPDFU_EMU_SHIM_PATH="$<TARGET_FILE:espdfu-emu-shim>")
add_dependencies(espdfu-emu-lib espdfu-emu-shim)

# The command-line emulator; a test tool, never installed.
add_executable(espdfu-emu emu/espdfu-emu.c)
target_link_libraries(espdfu-emu PRIVATE espdfu-emu-lib)

# A minimal libudev hotplug listener, for the tests of hotplug itself.
add_executable(espdfu-emu-monitor emu/emu-monitor.c)
target_link_libraries(espdfu-emu-monitor PRIVATE PkgConfig::LIBUDEV)

# Held to an outside implementation: the real dfu-util against emulated boards.
# One binary, one CTest test per case; "bench" (timings) is run by hand.
add_executable(test-emu-dfu-util test-emu-dfu-util.c)
target_link_libraries(test-emu-dfu-util PRIVATE espdfu-emu-lib)
target_compile_definitions(test-emu-dfu-util PRIVATE DFU_UTIL="${DFU_UTIL}"
  FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
set(EMU_TEST_ENV ${ESPDFU_SANITIZER_ENV})
foreach(case list flash erase-timeout runtime-detach runtime-flash several-boards faults)
  add_test(NAME emu-dfu-util-${case} COMMAND test-emu-dfu-util ${case})
  set_tests_properties(emu-dfu-util-${case} PROPERTIES ENVIRONMENT "${EMU_TEST_ENV}"
                       LABELS "emu;usb" TIMEOUT 90)
endforeach()

# The CLI: --expect, the report, hotplug and the control socket.
add_test(NAME emu-cli
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/test-emu-cli.sh $<TARGET_FILE:espdfu-emu>
                 $<TARGET_FILE:espdfu-emu-monitor> ${DFU_UTIL}
                 ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/mkdfu ${CMAKE_CURRENT_BINARY_DIR}/test-emu-cli.d)
set_tests_properties(emu-cli PROPERTIES ENVIRONMENT "${EMU_TEST_ENV}" LABELS "emu;usb"
                     TIMEOUT 120)

# Our engine through the real libusb and libudev: the real espdfu-flash binary
# against emulated boards (byte-exact, run-time detach, 8 s erase stall next to
# dfu-util, faults, unplug, cancel, wrong chip).
add_executable(test-usb-flash test-usb-flash.c)
target_link_libraries(test-usb-flash PRIVATE espdfu-emu-lib)
target_compile_definitions(test-usb-flash PRIVATE DFU_UTIL="${DFU_UTIL}"
  ESPDFU_FLASH="$<TARGET_FILE:espdfu-flash>" FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
add_dependencies(test-usb-flash espdfu-flash)
foreach(case dfu-mode runtime erase-stall faults retry unplug cancel wrong-chip broken-image)
  add_test(NAME usb-flash-${case} COMMAND test-usb-flash ${case})
  set_tests_properties(usb-flash-${case} PROPERTIES ENVIRONMENT "${EMU_TEST_ENV}"
                       LABELS "emu;usb" TIMEOUT 120)
endforeach()
