# Writes a manual page: PAGE_IN (roff, docs/man/*.in) with @HELP@ replaced by
# PROG --help, verbatim, and @VERSION@ and @DATE@ by PROG --version and the
# build's date (SOURCE_DATE_EPOCH when set, for reproducible packages).
# So the commands and options of the page are those of the program it was
# built with, to the character.
#   cmake -DPROG=bin/appeal-node -DPAGE_IN=appeal-node.8.in -DPAGE_OUT=appeal-node.8 -P manpage.cmake
foreach(var PROG PAGE_IN PAGE_OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "manpage.cmake: -D${var}= is required")
  endif()
endforeach()
execute_process(COMMAND ${PROG} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR help STREQUAL "")
  message(FATAL_ERROR "manpage.cmake: ${PROG} --help failed (${rc})")
endif()
execute_process(COMMAND ${PROG} --version OUTPUT_VARIABLE version RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0 OR version STREQUAL "")
  message(FATAL_ERROR "manpage.cmake: ${PROG} --version failed (${rc})")
endif()
string(TIMESTAMP date "%Y-%m-%d" UTC)

# roff: a backslash is \e, a minus (in options) \-; a line that starts with . or ' would be a request.
string(REPLACE "\\" "\\e" help "${help}")
string(REPLACE "-" "\\-" help "${help}")
string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
string(REGEX REPLACE "\n$" "" help "${help}")

file(READ ${PAGE_IN} page)
string(REPLACE "@HELP@" ".nf\n${help}\n.fi" page "${page}")
string(REPLACE "@VERSION@" "${version}" page "${page}")
string(REPLACE "@DATE@" "${date}" page "${page}")
file(WRITE ${PAGE_OUT} "${page}")
