# SPDX-License-Identifier: MIT
# check_sources.cmake - the layering of hakmem's own sources.
#   -DSOURCE_DIR=<project source dir> [-DEXPECT_VIOLATION=<text>]
#
# Layers, bottom up: stats, os, tiny, core.  A header belongs to the layer
# whose include/ (public) or src/ (private) holds it.  Every #include of a
# project header in libhak-<layer>/ must name:
#   - a public header of the same or a lower layer, or
#   - a private header of the same layer, from a source (never from a public
#     header: public headers are what other layers and users compile).
# And the public API header, hakmem.h, includes no other project header:
# it is the only header installed.
#
# With EXPECT_VIOLATION the script checks itself on a fixture tree: it must
# find a violation whose message contains that text.
set(layers stats os tiny core)

# header name -> layer rank and visibility
foreach(rank RANGE 3)
  list(GET layers ${rank} layer)
  foreach(kind include src)
    file(GLOB headers RELATIVE ${SOURCE_DIR}/libhak-${layer}/${kind}
         ${SOURCE_DIR}/libhak-${layer}/${kind}/*.h)
    foreach(h IN LISTS headers)
      if(DEFINED owner_${h})
        message(FATAL_ERROR "header ${h} exists in two layers; names must be unique")
      endif()
      set(owner_${h} ${rank})
      set(kind_${h} ${kind})
    endforeach()
  endforeach()
endforeach()

set(violations "")
set(checked 0)
foreach(rank RANGE 3)
  list(GET layers ${rank} layer)
  if(NOT IS_DIRECTORY ${SOURCE_DIR}/libhak-${layer})
    message(FATAL_ERROR "libhak-${layer} not found under ${SOURCE_DIR}")
  endif()
  file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR}
       ${SOURCE_DIR}/libhak-${layer}/*.c ${SOURCE_DIR}/libhak-${layer}/*.h)
  foreach(f IN LISTS files)
    file(STRINGS ${SOURCE_DIR}/${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*" "\\1" inc "${line}")
      get_filename_component(h "${inc}" NAME)
      if(NOT DEFINED owner_${h})
        continue() # a system header
      endif()
      math(EXPR checked "${checked} + 1")
      set(to ${owner_${h}})
      list(GET layers ${to} to_layer)
      if(to GREATER rank)
        list(APPEND violations
          "${f} includes ${h}: layer ${layer} cannot depend on ${to_layer} above it")
      elseif(kind_${h} STREQUAL "src" AND NOT to EQUAL rank)
        list(APPEND violations
          "${f} includes ${h}: a private header of layer ${to_layer}")
      elseif(kind_${h} STREQUAL "src" AND f MATCHES "/include/")
        list(APPEND violations
          "${f} includes ${h}: a public header cannot include a private one")
      elseif(f STREQUAL "libhak-core/include/hakmem.h")
        list(APPEND violations
          "${f} includes ${h}: the installed API header must stand alone")
      endif()
      if(NOT inc STREQUAL h)
        list(APPEND violations
          "${f} includes \"${inc}\": project headers are found through the include path, by name")
      endif()
    endforeach()
  endforeach()
endforeach()

if(DEFINED EXPECT_VIOLATION)
  string(FIND "${violations}" "${EXPECT_VIOLATION}" at)
  if(at LESS 0)
    message(FATAL_ERROR "self-test: expected a violation containing "
      "'${EXPECT_VIOLATION}', found: ${violations}")
  endif()
  message(STATUS "self-test: the violation was found: ${violations}")
  return()
endif()
if(checked LESS 4)
  message(FATAL_ERROR "only ${checked} project includes found: the check would be vacuous")
endif()
if(violations)
  string(REPLACE ";" "\n  " v "${violations}")
  message(FATAL_ERROR "layering violations:\n  ${v}")
endif()
message(STATUS "${checked} project includes checked, all downward")
