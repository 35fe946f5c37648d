# SPDX-License-Identifier: MIT
# check_build.cmake - builds one layering probe target and checks the outcome.
#   -DBUILD_DIR=<binary dir> -DTARGET=<target> -DHEADER=<header> -DEXPECT=pass|fail
# EXPECT=fail passes only if the build fails *because the header is not
# found* (gcc: "<h>: No such file or directory", clang: "'<h>' file not
# found"); a failure for any other reason (a broken build tree, a syntax
# error, a missing target) fails the test instead of passing it.
foreach(v BUILD_DIR TARGET HEADER EXPECT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_build.cmake: ${v} not set")
  endif()
endforeach()

execute_process(
  COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)

string(REPLACE "." "\\." h "${HEADER}")
set(not_found "(${h}: No such file or directory|'${h}' file not found)")
if(EXPECT STREQUAL "fail")
  if(rc EQUAL 0)
    message(FATAL_ERROR "${TARGET}: built, but ${HEADER} must not be visible "
      "from this layer (a layering violation is possible):\n${out}")
  endif()
  if(NOT out MATCHES "${not_found}")
    message(FATAL_ERROR "${TARGET}: the build failed, but not because ${HEADER} "
      "was not found; the probe proves nothing:\n${out}")
  endif()
  message(STATUS "${TARGET}: ${HEADER} not visible, as required")
elseif(EXPECT STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${TARGET}: must build (positive control):\n${out}")
  endif()
  message(STATUS "${TARGET}: built")
else()
  message(FATAL_ERROR "check_build.cmake: EXPECT must be pass or fail")
endif()
