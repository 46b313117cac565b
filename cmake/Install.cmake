# Installing: `cmake --install BUILD` and the Debian package (debian/,
# tools/package, ADR 0014) go through these rules. They name targets only,
# never source files, so the layout of node/ may change under them.
#
#   BINDIR                  appeal-node, appealctl
#   MANDIR                  appeal-node(8), appealctl(1), made at build time
#                           from docs/man/*.in and the programs' own --help
#   DATADIR/bash-completion the completion of both commands
#   DATADIR/appeal-node     kz-regions.tsv (jurisdiction codes), kato-sample.tsv
#                           (a sample of KATO, for offices: appeal-node init --kato)
#   DATADIR/doc/appeal-node README and docs/
#   APPEAL_SYSTEMD_UNIT_DIR appeal-node@.service, its ExecStart at BINDIR
#
# The rules, the holiday calendar, the classifier and the dashboard are
# compiled into the node (appeal-node init writes the files), so nothing else
# is installed for them.
include(GNUInstallDirs)

# --version, which the manual pages and the package's test read.
target_compile_definitions(appeal-node PRIVATE APPEAL_VERSION="${PROJECT_VERSION}")
target_compile_definitions(appealctl PRIVATE APPEAL_VERSION="${PROJECT_VERSION}")

install(TARGETS appeal-node appealctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit is docs/systemd/appeal-node@.service, written for the package
# (/usr/bin); another prefix gets its own BINDIR in ExecStart.
set(APPEAL_SYSTEMD_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
    CACHE PATH "Where appeal-node@.service is installed (the package: /lib/systemd/system)")
set(appeal_unit_src ${CMAKE_SOURCE_DIR}/docs/systemd/appeal-node@.service)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${appeal_unit_src})
file(READ ${appeal_unit_src} appeal_unit)
string(REPLACE "/usr/bin/appeal-node" "${CMAKE_INSTALL_FULL_BINDIR}/appeal-node" appeal_unit
               "${appeal_unit}")
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/install/appeal-node@.service CONTENT "${appeal_unit}"
     @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/install/appeal-node@.service
        DESTINATION ${APPEAL_SYSTEMD_UNIT_DIR})

# Bash completion: one script for both commands; it reads their --help at
# completion time, so it knows every command and option the installed
# programs know.
foreach(cmd appeal-node appealctl)
  install(FILES ${CMAKE_SOURCE_DIR}/tools/completion.bash
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME ${cmd})
endforeach()

# The translations (cmake/I18n.cmake): LOCALEDIR/LANG/LC_MESSAGES/appeal.mo,
# found by the programs next to BINDIR (node/base/i18n.h).
foreach(lang ${APPEAL_LANGS})
  install(FILES ${CMAKE_BINARY_DIR}/share/locale/${lang}/LC_MESSAGES/appeal.mo
          DESTINATION ${CMAKE_INSTALL_LOCALEDIR}/${lang}/LC_MESSAGES)
endforeach()

install(FILES ${CMAKE_SOURCE_DIR}/tools/data/kz-regions.tsv
              ${CMAKE_SOURCE_DIR}/tools/data/kato-sample.tsv
        DESTINATION ${CMAKE_INSTALL_DATADIR}/appeal-node)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/appeal-node)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/appeal-node
        PATTERN "man" EXCLUDE)

# Manual pages: docs/man/*.in, with the program's own --help (verbatim) and
# --version put in at build time by cmake/manpage.cmake, so a page cannot
# say other than the program it ships with (ADR 0014).
set(appeal_man_outputs)
foreach(page appeal-node.8 appealctl.1)
  string(REGEX REPLACE "\\.[0-9]$" "" cmd ${page})
  string(REGEX REPLACE "^.*\\." "" section ${page})
  set(out ${CMAKE_BINARY_DIR}/man/${page})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:${cmd}> -DPAGE_IN=${CMAKE_SOURCE_DIR}/docs/man/${page}.in
            -DPAGE_OUT=${out} -P ${CMAKE_SOURCE_DIR}/cmake/manpage.cmake
    DEPENDS ${cmd} ${CMAKE_SOURCE_DIR}/docs/man/${page}.in ${CMAKE_SOURCE_DIR}/cmake/manpage.cmake
    COMMENT "manual page ${cmd}(${section})"
    VERBATIM)
  list(APPEND appeal_man_outputs ${out})
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
add_custom_target(manpages ALL DEPENDS ${appeal_man_outputs})
