# Finds diffuse's dependencies on the system (nothing is downloaded) and refuses releases outside the
# tested range (diffuse_dependency_versions.cmake).
#
# Eigen's and xsimd's own version files reject other majors, so both are found without a version and
# compared here. For a header-only copy with no CMake package (an unpacked release, or the headers a
# build machine vendors), point DIFFUSE_XSIMD_INCLUDE_DIR / DIFFUSE_EIGEN_INCLUDE_DIR at it: the version
# is then read from its headers, and the targets xsimd / Eigen3::Eigen are made from the directory.
include(diffuse_dependency_versions)

set(DIFFUSE_XSIMD_INCLUDE_DIR "" CACHE PATH "Use the xsimd headers in this directory instead of find_package(xsimd)")
set(DIFFUSE_EIGEN_INCLUDE_DIR "" CACHE PATH "Use the Eigen headers in this directory instead of find_package(Eigen3)")

# Version "A.B.C" from #define lines of a header: each of names is the macro holding one component.
function(diffuse_version_from_header out header)
  set(parts)
  foreach(macro IN LISTS ARGN)
    file(STRINGS "${header}" line REGEX "^#define[ \t]+${macro}[ \t]+[0-9]+")
    string(REGEX REPLACE "^#define[ \t]+${macro}[ \t]+([0-9]+).*" "\\1" value "${line}")
    list(APPEND parts "${value}")
  endforeach()
  list(JOIN parts "." version)
  set(${out} "${version}" PARENT_SCOPE)
endfunction()

if(DIFFUSE_EIGEN_INCLUDE_DIR)
  if(NOT EXISTS "${DIFFUSE_EIGEN_INCLUDE_DIR}/Eigen/Core")
    message(FATAL_ERROR "DIFFUSE_EIGEN_INCLUDE_DIR=${DIFFUSE_EIGEN_INCLUDE_DIR} holds no Eigen/Core")
  endif()
  # Eigen 5 keeps its version in Eigen/Version (EIGEN_MAJOR_VERSION 5 = release 5); 3.4 in Macros.h
  # (EIGEN_WORLD_VERSION 3, EIGEN_MAJOR_VERSION 4 = release 3.4).
  if(EXISTS "${DIFFUSE_EIGEN_INCLUDE_DIR}/Eigen/Version")
    diffuse_version_from_header(Eigen3_VERSION "${DIFFUSE_EIGEN_INCLUDE_DIR}/Eigen/Version"
                                EIGEN_MAJOR_VERSION EIGEN_MINOR_VERSION EIGEN_PATCH_VERSION)
  else()
    diffuse_version_from_header(Eigen3_VERSION "${DIFFUSE_EIGEN_INCLUDE_DIR}/Eigen/src/Core/util/Macros.h"
                                EIGEN_WORLD_VERSION EIGEN_MAJOR_VERSION EIGEN_MINOR_VERSION)
  endif()
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DIFFUSE_EIGEN_INCLUDE_DIR}")
  set(diffuse_eigen_where "${DIFFUSE_EIGEN_INCLUDE_DIR}")
else()
  find_package(Eigen3 REQUIRED NO_MODULE)
  set(diffuse_eigen_where "${Eigen3_DIR}")
endif()
diffuse_version_in_range(problem Eigen "${Eigen3_VERSION}" ${DIFFUSE_EIGEN_VERSION_RANGE})
if(problem)
  message(FATAL_ERROR "${problem} (in ${diffuse_eigen_where}). Debian/Ubuntu: apt install libeigen3-dev; "
                      "or point DIFFUSE_EIGEN_INCLUDE_DIR at a supported release's headers.")
endif()

if(DIFFUSE_XSIMD_INCLUDE_DIR)
  set(header "${DIFFUSE_XSIMD_INCLUDE_DIR}/xsimd/config/xsimd_config.hpp")
  if(NOT EXISTS "${header}")
    message(FATAL_ERROR "DIFFUSE_XSIMD_INCLUDE_DIR=${DIFFUSE_XSIMD_INCLUDE_DIR} holds no xsimd/config/xsimd_config.hpp")
  endif()
  diffuse_version_from_header(xsimd_VERSION "${header}" XSIMD_VERSION_MAJOR XSIMD_VERSION_MINOR XSIMD_VERSION_PATCH)
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DIFFUSE_XSIMD_INCLUDE_DIR}")
  set(diffuse_xsimd_where "${DIFFUSE_XSIMD_INCLUDE_DIR}")
else()
  find_package(xsimd REQUIRED)
  set(diffuse_xsimd_where "${xsimd_DIR}")
endif()
diffuse_version_in_range(problem xsimd "${xsimd_VERSION}" ${DIFFUSE_XSIMD_VERSION_RANGE})
if(problem)
  message(FATAL_ERROR "${problem} (in ${diffuse_xsimd_where}). Debian/Ubuntu: apt install libxsimd-dev; "
                      "or point DIFFUSE_XSIMD_INCLUDE_DIR at a supported release's headers.")
endif()
# Debian's xsimd 8 package names a plain "xtl" link dependency it does not need (xtl is only used for
# xtl::xcomplex support); stand in an empty target when xtl itself is absent.
if(NOT TARGET xtl)
  find_package(xtl QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()

# The UNet loader parses config.json and safetensors headers with nlohmann/json.
find_package(nlohmann_json REQUIRED)
diffuse_version_in_range(problem nlohmann_json "${nlohmann_json_VERSION}" ${DIFFUSE_NLOHMANN_JSON_VERSION_RANGE})
if(problem)
  message(FATAL_ERROR "${problem} (in ${nlohmann_json_DIR}). Debian/Ubuntu: apt install nlohmann-json3-dev")
endif()
message(STATUS "diffuse: Eigen ${Eigen3_VERSION}, xsimd ${xsimd_VERSION}, nlohmann_json ${nlohmann_json_VERSION}")
find_package(OpenMP COMPONENTS CXX)
