# What `cmake --install` lays out, checked in a temporary DESTDIR: the tree,
# the systemd units (systemd-analyze verify and security), the udev rules
# (evaluated by udevadm against an emulated board). Each test installs this
# build tree itself (`cmake --install BUILD --prefix /usr`, DESTDIR set), which
# takes about a second. The lock keeps them from writing the build tree's
# install_manifest.txt at the same time.
foreach(t test-install test-units test-udev-rules)
  add_test(NAME ${t} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/${t}.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}" LABELS "install"
                       TIMEOUT 60 SKIP_RETURN_CODE 77 RESOURCE_LOCK espdfu-install)
endforeach()
