# Installation: headers, both libraries, the CMake package and hakmem.pc.
install(TARGETS hakmem hakmem_shared EXPORT hakmemTargets
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
