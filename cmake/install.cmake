# Installation: headers, both libraries, the CMake package and hakmem.pc.
install(TARGETS hakmem hakmem_cxx hakmem_cxx_whole hakmem_shared EXPORT hakmemTargets
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
configure_file(cmake/hakmem.pc.in ${CMAKE_CURRENT_BINARY_DIR}/hakmem.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hakmem.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
