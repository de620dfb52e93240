include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Every destination is relative to the install prefix, so `cmake --install --prefix <p>` (and DESTDIR)
# install nothing outside <p>; nothing is ever written to the source tree.
install(DIRECTORY include/diffuse DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS diffuse diffuse_openmp EXPORT diffuse-targets)
install(EXPORT diffuse-targets NAMESPACE diffuse:: DESTINATION share/cmake/diffuse)
configure_package_config_file(cmake/diffuse-config.cmake.in
  ${PROJECT_BINARY_DIR}/diffuse-config.cmake INSTALL_DESTINATION share/cmake/diffuse)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/diffuse-config-version.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/diffuse-config.cmake ${PROJECT_BINARY_DIR}/diffuse-config-version.cmake
              ${PROJECT_SOURCE_DIR}/cmake/diffuse_dependency_versions.cmake
  DESTINATION share/cmake/diffuse)

# pkg-config: <prefix>/share/pkgconfig/diffuse.pc (header-only, so not under the architecture's libdir).
# Its prefix is ${pcfiledir} plus the way back up, so the file stays right whatever prefix the install
# step is given; absolute CMAKE_INSTALL_* directories are written as they are.
set(DIFFUSE_PC_INSTALL_DIR ${CMAKE_INSTALL_DATADIR}/pkgconfig)
if(IS_ABSOLUTE "${DIFFUSE_PC_INSTALL_DIR}")
  set(DIFFUSE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH DIFFUSE_PC_UP "/diffuse-prefix/${DIFFUSE_PC_INSTALL_DIR}" "/diffuse-prefix")
  string(REGEX REPLACE "/+$" "" DIFFUSE_PC_UP "${DIFFUSE_PC_UP}")
  set(DIFFUSE_PC_PREFIX "\${pcfiledir}/${DIFFUSE_PC_UP}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(DIFFUSE_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(DIFFUSE_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/diffuse.pc.in ${PROJECT_BINARY_DIR}/diffuse.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/diffuse.pc DESTINATION ${DIFFUSE_PC_INSTALL_DIR})
