include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY include/diffuse DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS diffuse diffuse_openmp EXPORT diffuse-targets)
install(EXPORT diffuse-targets NAMESPACE diffuse:: DESTINATION share/cmake/diffuse)
configure_package_config_file(cmake/diffuse-config.cmake.in
  ${PROJECT_BINARY_DIR}/diffuse-config.cmake INSTALL_DESTINATION share/cmake/diffuse)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/diffuse-config-version.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/diffuse-config.cmake ${PROJECT_BINARY_DIR}/diffuse-config-version.cmake
  DESTINATION share/cmake/diffuse)
