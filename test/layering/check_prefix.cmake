# SPDX-License-Identifier: MIT
# check_prefix.cmake - every global symbol the static archive defines starts
# with hak_, so that a program linking libhakmem.a can name its own
# functions as it likes.   -DNM=<nm> -DLIB=<libhakmem.a>
# The C++ operators (mangled _Znw*, _Zna*, _Zdl*, _Zda*) are the one
# exception: replacing them is what they are for.  AddressSanitizer adds an
# ODR indicator per global (__odr_asan.<name>), named after ours.
execute_process(COMMAND ${NM} -P -g --defined-only "${LIB}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIB}: ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(bad "")
set(good 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ ]+) ([A-Za-z]) ")
    set(sym "${CMAKE_MATCH_1}")
    if(sym MATCHES "^(__odr_asan\\.)?hak_" OR sym MATCHES "^_Z(nw|na|dl|da)")
      math(EXPR good "${good} + 1")
    else()
      list(APPEND bad "${sym}")
    endif()
  endif()
endforeach()
if(good EQUAL 0)
  message(FATAL_ERROR "no hak_ symbol found in ${LIB}: wrong archive?")
endif()
if(bad)
  list(REMOVE_DUPLICATES bad)
  string(REPLACE ";" ", " bad "${bad}")
  message(FATAL_ERROR "${LIB} defines globals without the hak_ prefix: ${bad}")
endif()
message(STATUS "${good} global symbols, all prefixed hak_")
