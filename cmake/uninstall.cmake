# SPDX-License-Identifier: MIT
# uninstall.cmake - removes what `cmake --install` installed from this build
# tree, as listed in its install_manifest.txt (the `uninstall` target).
set(manifest "${CMAKE_CURRENT_BINARY_DIR}/install_manifest.txt")
if(NOT EXISTS "${manifest}")
  message(FATAL_ERROR "nothing to uninstall: ${manifest} not found (install first)")
endif()
file(STRINGS "${manifest}" files)
foreach(f IN LISTS files)
  if(EXISTS "${f}" OR IS_SYMLINK "${f}")
    message(STATUS "Removing ${f}")
    file(REMOVE "${f}")
  else()
    message(STATUS "Already gone: ${f}")
  endif()
endforeach()
