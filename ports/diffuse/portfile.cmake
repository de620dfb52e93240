# vcpkg port of diffuse (header-only). Where the sources come from, first match wins:
#   1. DIFFUSE_SOURCE_PATH, a local diffuse tree: set it in a custom triplet, or in the environment
#      with VCPKG_ENV_PASSTHROUGH=DIFFUSE_SOURCE_PATH (offline; the tree is only read).
#   2. The diffuse tree this port lives in (ports/diffuse/../..), when used as an overlay port from a
#      checkout: vcpkg install diffuse --overlay-ports=<checkout>/ports   (offline).
#   3. vcpkg_from_git with DIFFUSE_GIT_URL and DIFFUSE_GIT_REF (a commit SHA), e.g. from a triplet.
# scripts/check-packaging.sh replays these steps without vcpkg.
if(NOT DEFINED DIFFUSE_SOURCE_PATH AND DEFINED ENV{DIFFUSE_SOURCE_PATH})
  set(DIFFUSE_SOURCE_PATH "$ENV{DIFFUSE_SOURCE_PATH}")
endif()
get_filename_component(diffuse_checkout "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(DIFFUSE_SOURCE_PATH)
  set(SOURCE_PATH "${DIFFUSE_SOURCE_PATH}")
elseif(EXISTS "${diffuse_checkout}/include/diffuse/ddpm.hpp" AND EXISTS "${diffuse_checkout}/cmake/diffuse_install.cmake")
  set(SOURCE_PATH "${diffuse_checkout}")
elseif(DIFFUSE_GIT_URL AND DIFFUSE_GIT_REF)
  vcpkg_from_git(
    OUT_SOURCE_PATH SOURCE_PATH
    URL "${DIFFUSE_GIT_URL}"
    REF "${DIFFUSE_GIT_REF}"
  )
else()
  message(FATAL_ERROR "diffuse: no sources. Set DIFFUSE_SOURCE_PATH to a diffuse tree, use this port as an overlay "
                      "port from a diffuse checkout, or set DIFFUSE_GIT_URL and DIFFUSE_GIT_REF (a commit SHA).")
endif()
if(NOT EXISTS "${SOURCE_PATH}/include/diffuse/ddpm.hpp")
  message(FATAL_ERROR "diffuse: ${SOURCE_PATH} is not a diffuse source tree")
endif()
# vcpkg's binary cache keys the package on the port's files only: the port carries the hash of the
# sources it installs, and a tree that does not match is refused rather than cached under a stale key.
include("${CMAKE_CURRENT_LIST_DIR}/source_hash.cmake")
diffuse_source_hash(diffuse_tree_hash "${SOURCE_PATH}")
file(READ "${CMAKE_CURRENT_LIST_DIR}/source-tree.sha512" diffuse_recorded_hash)
string(STRIP "${diffuse_recorded_hash}" diffuse_recorded_hash)
if(NOT diffuse_tree_hash STREQUAL diffuse_recorded_hash)
  message(FATAL_ERROR "diffuse: the sources in ${SOURCE_PATH} are not the ones this port was stamped for "
                      "(ports/diffuse/source-tree.sha512); run bash scripts/stamp-vcpkg-port.sh in that tree and use its ports/ folder")
endif()

# Header-only: one (release) configure is enough, and nothing is built.
set(VCPKG_BUILD_TYPE release)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DDIFFUSE_BUILD_TESTS=OFF
    -DDIFFUSE_BUILD_EXAMPLES=OFF
    -DDIFFUSE_BUILD_BENCHMARKS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/diffuse)
vcpkg_fixup_pkgconfig()

# Nothing architecture- or configuration-specific in a header-only package.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
