# Finds diffuse's dependencies on the system; nothing is downloaded.
# Eigen's and xsimd's version files reject newer majors, so they are found without a version
# and the version is compared here.
find_package(Eigen3 REQUIRED NO_MODULE)
if(Eigen3_VERSION VERSION_LESS 3.4)
  message(FATAL_ERROR "diffuse needs Eigen >= 3.4; found ${Eigen3_VERSION} (Debian/Ubuntu: apt install libeigen3-dev)")
endif()
find_package(xsimd REQUIRED)
# Debian's xsimd 8 package names a plain "xtl" link dependency it does not need (xtl is only used for
# xtl::xcomplex support); stand in an empty target when xtl itself is absent.
if(NOT TARGET xtl)
  find_package(xtl QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()
if(xsimd_VERSION VERSION_LESS 8)
  message(FATAL_ERROR "diffuse needs xsimd >= 8; found ${xsimd_VERSION} (Debian/Ubuntu: apt install libxsimd-dev)")
endif()
# The UNet loader parses config.json and safetensors headers with nlohmann/json.
find_package(nlohmann_json 3.9 REQUIRED)
find_package(OpenMP COMPONENTS CXX)
