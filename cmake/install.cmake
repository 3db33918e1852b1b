# What `cmake --install` puts where, beyond the programs (their install(TARGETS)
# rules are in daemon/ and client/): the systemd units, the sysusers.d entry,
# the udev rules, the default configuration, man pages, bash completion and
# the documentation, laid out as a Debian package would.
#
# Directories under the prefix (man, completion, doc) are relative, so
# `cmake --install BUILD --prefix P` moves them. The system directories come
# from pkg-config and are decided at install time by cmake/install-system.cmake,
# so they follow --prefix too:
#
#   - prefix /usr (the .pc files' own prefix): pkg-config's value as it is,
#     e.g. Debian 12 /lib/systemd/system, /lib/udev/rules.d,
#     /usr/lib/sysusers.d, and /etc/espdfud/espdfud.conf;
#   - any other prefix P: the value with pkg-config's prefix and root_prefix
#     redefined to P (`pkg-config --define-variable=prefix=P`), e.g.
#     /usr/local/lib/systemd/system. A value the .pc file does not derive from
#     its prefix (udev.pc's udevdir=/lib/udev) is moved under P the same way:
#     P/lib/udev. systemd, udev and systemd-sysusers all search /usr/local/lib.
#   - without the .pc file: P/lib/systemd/system, P/lib/udev, P/lib/sysusers.d.
#
# A packager may name any of them outright (absolute, used as given):
#   -DESPDFU_SYSTEMD_UNIT_DIR=... -DESPDFU_UDEV_DIR=... -DESPDFU_SYSUSERS_DIR=...

set(ESPDFU_SYSTEMD_UNIT_DIR "" CACHE PATH
    "systemd system unit directory (empty: pkg-config systemd systemdsystemunitdir)")
set(ESPDFU_UDEV_DIR "" CACHE PATH
    "udev directory, rules go to its rules.d (empty: pkg-config udev udevdir)")
set(ESPDFU_SYSUSERS_DIR "" CACHE PATH
    "sysusers.d directory (empty: pkg-config systemd sysusersdir)")

# Man pages carry the version; nothing else is substituted.
foreach(page espdfud.8 espdfuctl.1 espdfud.conf.5)
  configure_file(${PROJECT_SOURCE_DIR}/docs/man/${page} ${PROJECT_BINARY_DIR}/man/${page} @ONLY)
  string(REGEX REPLACE ".*\\." "" section "${page}")
  install(FILES ${PROJECT_BINARY_DIR}/man/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()

# bash-completion loads completions/<command> on first use.
install(FILES ${PROJECT_SOURCE_DIR}/client/espdfuctl.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME espdfuctl)

# /usr/share/doc/espdfud: the user-facing documents and the examples, among
# them the opt-in udev rule that starts espdfud when a board is plugged in.
set(ESPDFU_DOCS docs/architecture.md docs/configuration.md docs/protocol.md docs/image-format.md)
if(EXISTS ${PROJECT_SOURCE_DIR}/README.md)
  list(PREPEND ESPDFU_DOCS README.md)
endif()
list(TRANSFORM ESPDFU_DOCS PREPEND ${PROJECT_SOURCE_DIR}/)
install(FILES ${ESPDFU_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/daemon/espdfud.conf.example
              ${PROJECT_SOURCE_DIR}/udev/71-espdfud-autostart.rules
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# Units, sysusers.d, udev rules and etc/espdfud/espdfud.conf: at install time.
install(CODE "
  set(ESPDFU_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(ESPDFU_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(ESPDFU_PKG_CONFIG \"${PKG_CONFIG_EXECUTABLE}\")
  set(ESPDFU_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
  set(ESPDFU_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(ESPDFU_SYSTEMD_UNIT_DIR \"${ESPDFU_SYSTEMD_UNIT_DIR}\")
  set(ESPDFU_UDEV_DIR \"${ESPDFU_UDEV_DIR}\")
  set(ESPDFU_SYSUSERS_DIR \"${ESPDFU_SYSUSERS_DIR}\")
")
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/install-system.cmake)
