# SPDX-License-Identifier: MIT
# Installation: headers, both libraries, the CMake package and hakmem.pc.
set(hak_installed_targets hakmem hakmem_shared)
if(TARGET hakmem_cxx)
  list(APPEND hak_installed_targets hakmem_cxx hakmem_cxx_whole)
endif()
install(TARGETS ${hak_installed_targets} EXPORT hakmemTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES libhak-core/include/hakmem.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/hakmem)
install(EXPORT hakmemTargets NAMESPACE hakmem::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hakmem)
configure_package_config_file(cmake/hakmemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/hakmemConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hakmem)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/hakmemConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hakmemConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/hakmemConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hakmem)
# hakmem.pc finds the prefix from its own directory: one ".." per component
# of CMAKE_INSTALL_LIBDIR/pkgconfig (lib/pkgconfig, lib/x86_64-linux-gnu/pkgconfig).
file(RELATIVE_PATH HAKMEM_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" HAKMEM_PC_TO_PREFIX "${HAKMEM_PC_TO_PREFIX}")
# hakmem.pc: the static hak_* library, named by path so that a plain
# `cc $(pkg-config --libs hakmem)` cannot pick the .so instead.
# hakmem-shared.pc: libhakmem.so, with the run path to find it.
foreach(pc hakmem hakmem-shared)
  configure_file(cmake/${pc}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

install(FILES LICENSE CHANGELOG.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# `cmake --build <dir> --target uninstall` removes what the last install of
# this tree put in place (its install_manifest.txt).
add_custom_target(uninstall
  COMMAND ${CMAKE_COMMAND} -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/uninstall.cmake
  WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR} VERBATIM)

# Packages: `cpack -G DEB` or `cpack -G TGZ` in the build tree.  A variant
# other than standard is packaged under its own name (hakmem-fast), so that
# the package says what it holds; the files are the same names, so two
# variants go to two prefixes, not one (README, "Packages").
set(CPACK_PACKAGE_NAME hakmem)
if(NOT HAKMEM_VARIANT STREQUAL "standard")
  set(CPACK_PACKAGE_NAME hakmem-${HAKMEM_VARIANT})
endif()
set(CPACK_PACKAGE_VENDOR "the hakmem authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "general-purpose memory allocator (malloc replacement), ${HAKMEM_VARIANT} build")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB TGZ)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "the hakmem authors")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6 (>= 2.34)")
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
