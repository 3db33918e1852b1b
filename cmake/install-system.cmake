# Install-time half of cmake/install.cmake (read its header for the rules).
# Runs inside cmake_install.cmake, where CMAKE_INSTALL_PREFIX is the prefix of
# this install (--prefix included) and file(INSTALL) adds $ENV{DESTDIR}.

set(_prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "(.)/+$" "\\1" _prefix "${_prefix}")

# _espdfu_pc(OUT MODULE VARIABLE FALLBACK): a directory pkg-config names,
# relocated to _prefix unless _prefix is the .pc file's own prefix.
function(_espdfu_pc out module variable fallback)
  set(value "")
  if(ESPDFU_PKG_CONFIG)
    execute_process(COMMAND "${ESPDFU_PKG_CONFIG}" --variable=prefix ${module}
                    OUTPUT_VARIABLE pc_prefix RESULT_VARIABLE r ERROR_QUIET
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(r EQUAL 0)
      if(pc_prefix STREQUAL "")
        set(pc_prefix "/usr") # udev.pc has no prefix; its paths are /usr's
      endif()
      if(_prefix STREQUAL "/")
        set(pc_prefix "/") # the .pc values as they are
      endif()
      set(args "")
      if(NOT _prefix STREQUAL pc_prefix)
        set(args "--define-variable=prefix=${_prefix}" "--define-variable=root_prefix=${_prefix}")
      endif()
      execute_process(COMMAND "${ESPDFU_PKG_CONFIG}" ${args} --variable=${variable} ${module}
                      OUTPUT_VARIABLE value RESULT_VARIABLE r ERROR_QUIET
                      OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(NOT r EQUAL 0)
        set(value "")
      endif()
      # Not derived from the prefix (/lib/udev): move it under the prefix.
      if(value AND NOT _prefix STREQUAL pc_prefix)
        string(FIND "${value}/" "${_prefix}/" at)
        if(NOT at EQUAL 0)
          string(REGEX REPLACE "^(/usr)?/" "${_prefix}/" value "${value}")
        endif()
      endif()
    endif()
  endif()
  if(NOT value)
    set(value "${_prefix}/${fallback}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(_espdfu_dir out override module variable fallback)
  if(override)
    set(${out} "${override}" PARENT_SCOPE)
  else()
    _espdfu_pc(value ${module} ${variable} "${fallback}")
    set(${out} "${value}" PARENT_SCOPE)
  endif()
endfunction()

_espdfu_dir(_unitdir "${ESPDFU_SYSTEMD_UNIT_DIR}" systemd systemdsystemunitdir lib/systemd/system)
_espdfu_dir(_sysusersdir "${ESPDFU_SYSUSERS_DIR}" systemd sysusersdir lib/sysusers.d)
_espdfu_dir(_udevdir "${ESPDFU_UDEV_DIR}" udev udevdir lib/udev)

# As GNUInstallDirs puts it: /etc for the prefixes / and /usr, /etc/opt/X for
# /opt/X, else PREFIX/etc. espdfud itself always reads /etc/espdfud/espdfud.conf
# (or --config FILE), so another prefix installs only a copy to start from.
if(IS_ABSOLUTE "${ESPDFU_SYSCONFDIR}")
  set(_sysconfdir "${ESPDFU_SYSCONFDIR}")
elseif(_prefix MATCHES "^/(usr)?$")
  set(_sysconfdir "/etc")
elseif(_prefix MATCHES "^/opt/")
  set(_sysconfdir "/etc${_prefix}")
else()
  set(_sysconfdir "${_prefix}/${ESPDFU_SYSCONFDIR}")
endif()

if(IS_ABSOLUTE "${ESPDFU_SBINDIR}")
  set(SBINDIR "${ESPDFU_SBINDIR}")
else()
  set(SBINDIR "${_prefix}/${ESPDFU_SBINDIR}")
endif()

# The service names the daemon by its installed path.
file(READ "${ESPDFU_SOURCE_DIR}/systemd/espdfud.service.in" _unit)
string(CONFIGURE "${_unit}" _unit @ONLY)
# One staging file per destination, so installs to several run side by side.
string(MD5 _key "$ENV{DESTDIR}|${_prefix}")
file(WRITE "${ESPDFU_STAGING_DIR}/${_key}/espdfud.service" "${_unit}")

file(INSTALL DESTINATION "${_unitdir}" TYPE FILE
     FILES "${ESPDFU_STAGING_DIR}/${_key}/espdfud.service" "${ESPDFU_SOURCE_DIR}/systemd/espdfud.socket")
file(INSTALL DESTINATION "${_sysusersdir}" TYPE FILE RENAME espdfud.conf
     FILES "${ESPDFU_SOURCE_DIR}/systemd/espdfud.sysusers")
file(INSTALL DESTINATION "${_udevdir}/rules.d" TYPE FILE
     FILES "${ESPDFU_SOURCE_DIR}/udev/70-espdfud.rules")

# The commented default configuration: every key, every default. An existing
# file is an administrator's and is kept.
if(EXISTS "$ENV{DESTDIR}${_sysconfdir}/espdfud/espdfud.conf")
  message(STATUS "Keeping: $ENV{DESTDIR}${_sysconfdir}/espdfud/espdfud.conf")
else()
  file(INSTALL DESTINATION "${_sysconfdir}/espdfud" TYPE FILE RENAME espdfud.conf
       FILES "${ESPDFU_SOURCE_DIR}/daemon/espdfud.conf.example")
endif()
