# Installs the systemd unit and the default config. Runs at install time
# (included from cmake_install.cmake), so every path follows the prefix given
# then (`cmake --install build --prefix /usr`), not the one at configure time.
#
# Set by the install(CODE) step in CMakeLists.txt: KEYTRAIL_SOURCE_DIR, and
# KEYTRAIL_SBINDIR, KEYTRAIL_SYSCONFDIR, KEYTRAIL_DOCDIR, KEYTRAIL_UNITDIR
# (each relative to the prefix, or absolute).

# GNUInstallDirs' rule for the full path of a directory, applied to the
# install-time prefix: etc of the prefixes / and /usr is /etc, of /opt/X is
# /etc/opt/X.
function(keytrail_full_dir out dir is_sysconf)
  set(prefix "${CMAKE_INSTALL_PREFIX}")
  string(REGEX REPLACE "/+$" "" prefix "${prefix}")
  if(IS_ABSOLUTE "${dir}")
    set(full "${dir}")
  elseif(is_sysconf AND (prefix STREQUAL "" OR prefix STREQUAL "/usr"))
    set(full "/${dir}")
  elseif(is_sysconf AND prefix MATCHES "^/opt/")
    set(full "/${dir}${prefix}")
  else()
    set(full "${prefix}/${dir}")
  endif()
  set(${out} "${full}" PARENT_SCOPE)
endfunction()

keytrail_full_dir(KEYTRAIL_BIN_DIR "${KEYTRAIL_SBINDIR}" FALSE)
keytrail_full_dir(KEYTRAIL_DOC_DIR "${KEYTRAIL_DOCDIR}" FALSE)
keytrail_full_dir(KEYTRAIL_UNIT_DIR "${KEYTRAIL_UNITDIR}" FALSE)
keytrail_full_dir(KEYTRAIL_ETC_DIR "${KEYTRAIL_SYSCONFDIR}" TRUE)
set(KEYTRAIL_BIN "${KEYTRAIL_BIN_DIR}/keytrail")
set(KEYTRAIL_CONFIG_DIR "${KEYTRAIL_ETC_DIR}/keytrail")
set(KEYTRAIL_CONFIG "${KEYTRAIL_CONFIG_DIR}/keytrail.yaml")

# The unit is a vendor unit: reinstalling replaces it, and admins change it
# with drop-ins in /etc/systemd/system/keytrail.service.d/, which it never
# touches. configure_file writes it whenever its content differs, where
# file(INSTALL) would skip one edited within a second as "Up-to-date".
set(KEYTRAIL_UNIT "$ENV{DESTDIR}${KEYTRAIL_UNIT_DIR}/keytrail.service")
message(STATUS "Installing: ${KEYTRAIL_UNIT}")
configure_file("${KEYTRAIL_SOURCE_DIR}/tools/systemd/keytrail.service.in" "${KEYTRAIL_UNIT}" @ONLY
               FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${KEYTRAIL_UNIT_DIR}/keytrail.service") # no DESTDIR, as file(INSTALL)
# Older versions installed the unit into /etc, where it overrides this one.
if(EXISTS "$ENV{DESTDIR}/etc/systemd/system/keytrail.service"
   AND NOT KEYTRAIL_UNIT_DIR STREQUAL "/etc/systemd/system")
  message(WARNING "/etc/systemd/system/keytrail.service (from an older install) overrides "
                  "${KEYTRAIL_UNIT_DIR}/keytrail.service: move any changes into a drop-in in "
                  "/etc/systemd/system/keytrail.service.d/, then remove it and run "
                  "`systemctl daemon-reload`")
endif()

# The config is the admin's: an existing one is kept, the default goes beside
# it. file(INSTALL) adds DESTDIR itself; the existence check must add it.
if(EXISTS "$ENV{DESTDIR}${KEYTRAIL_CONFIG}")
  message(STATUS "Kept the existing ${KEYTRAIL_CONFIG}; the default is keytrail.yaml.default")
  file(INSTALL "${KEYTRAIL_SOURCE_DIR}/tools/keytrail.yaml" DESTINATION "${KEYTRAIL_CONFIG_DIR}"
       RENAME keytrail.yaml.default FILE_PERMISSIONS OWNER_READ OWNER_WRITE)
else()
  file(INSTALL "${KEYTRAIL_SOURCE_DIR}/tools/keytrail.yaml" DESTINATION "${KEYTRAIL_CONFIG_DIR}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE)
endif()
