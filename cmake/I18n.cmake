# Translations (docs/i18n.md): po/LANG.po compiled by msgfmt into
#   BUILD/share/locale/LANG/LC_MESSAGES/appeal.mo   (programs: node/base/i18n.h)
#   BUILD/gen/web/i18n-LANG.json                    (the dashboard, embedded)
# The programs find BUILD/share/locale next to BUILD/bin, and an install's
# LOCALEDIR next to its BINDIR, the same way (i18n_localedir).
# `cmake --build BUILD --target pot` regenerates po/appeal.pot and merges it
# into the .po files (po/update).
include(GNUInstallDirs)
find_program(MSGFMT msgfmt REQUIRED)
find_program(MSGGREP msggrep REQUIRED)
find_program(I18N_PYTHON3 python3 REQUIRED)

set(APPEAL_LANGS kk ru)
set(APPEAL_MO_FILES)
set(APPEAL_WEB_I18N)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/gen/web)
foreach(lang ${APPEAL_LANGS})
  set(po ${CMAKE_SOURCE_DIR}/po/${lang}.po)
  set(mo ${CMAKE_BINARY_DIR}/share/locale/${lang}/LC_MESSAGES/appeal.mo)
  add_custom_command(
    OUTPUT ${mo}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/share/locale/${lang}/LC_MESSAGES
    COMMAND ${MSGFMT} --check -o ${mo} ${po}
    DEPENDS ${po}
    COMMENT "msgfmt po/${lang}.po")
  list(APPEND APPEAL_MO_FILES ${mo})
  # The dashboard's part of the same catalogue: the entries from node/service/web/.
  set(webpo ${CMAKE_BINARY_DIR}/gen/web-${lang}.po)
  set(webmo ${CMAKE_BINARY_DIR}/gen/web-${lang}.mo)
  set(json ${CMAKE_BINARY_DIR}/gen/web/i18n-${lang}.json)
  add_custom_command(
    OUTPUT ${json}
    COMMAND ${MSGGREP} -N node/service/web/* -o ${webpo} ${po}
    COMMAND ${MSGFMT} -o ${webmo} ${webpo}
    COMMAND ${I18N_PYTHON3} ${CMAKE_SOURCE_DIR}/po/mo2json.py --lang ${lang} --mo ${webmo}
            --regions ${CMAKE_SOURCE_DIR}/tools/data/kz-regions.tsv -o ${json}
    DEPENDS ${po} ${CMAKE_SOURCE_DIR}/po/mo2json.py ${CMAKE_SOURCE_DIR}/tools/data/kz-regions.tsv
    COMMENT "dashboard strings: ${lang}"
    VERBATIM)
  list(APPEND APPEAL_WEB_I18N ${json})
endforeach()
set(json ${CMAKE_BINARY_DIR}/gen/web/i18n-en.json)
add_custom_command(
  OUTPUT ${json}
  COMMAND ${I18N_PYTHON3} ${CMAKE_SOURCE_DIR}/po/mo2json.py --lang en
          --regions ${CMAKE_SOURCE_DIR}/tools/data/kz-regions.tsv -o ${json}
  DEPENDS ${CMAKE_SOURCE_DIR}/po/mo2json.py ${CMAKE_SOURCE_DIR}/tools/data/kz-regions.tsv
  COMMENT "dashboard strings: en"
  VERBATIM)
list(APPEND APPEAL_WEB_I18N ${json})
add_custom_target(translations ALL DEPENDS ${APPEAL_MO_FILES} ${APPEAL_WEB_I18N})

add_custom_target(pot COMMAND ${CMAKE_SOURCE_DIR}/po/update
                  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} COMMENT "po/appeal.pot and po/*.po")
