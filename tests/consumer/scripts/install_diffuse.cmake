# Configures diffuse (tests, examples and benchmarks off) in a build dir of its own and installs it,
# then checks the install: every file under the prefix and listed in install_manifest.txt, the
# expected files there, the public headers all present, no path of the build or source tree baked
# into the installed files.
#   -DSOURCE_DIR=<diffuse tree> -DBINARY_DIR=<build dir> -DPREFIX=<install prefix>
#   -DGENERATOR=... -DCXX_COMPILER=... -DBUILD_TYPE=... [-DMAKE_PROGRAM=...]
#   [-DPREFIX_AT_INSTALL=ON]      configure with another CMAKE_INSTALL_PREFIX, install with --prefix
#   [-DCHECK_SOURCE_UNCHANGED=ON] fail if anything under SOURCE_DIR was created, removed or touched
cmake_minimum_required(VERSION 3.20)  # script mode: the policies of the project (IN_LIST, ...)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
diffuse_require(SOURCE_DIR BINARY_DIR PREFIX GENERATOR CXX_COMPILER BUILD_TYPE)
file(REAL_PATH "${SOURCE_DIR}" SOURCE_DIR)

if(CHECK_SOURCE_UNCHANGED)
  diffuse_snapshot("${SOURCE_DIR}" source_before)
endif()
file(REMOVE_RECURSE "${BINARY_DIR}" "${PREFIX}" "${PREFIX}-unused")

diffuse_toolchain_args(args)
list(APPEND args -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_EXAMPLES=OFF -DDIFFUSE_BUILD_BENCHMARKS=OFF)
if(PREFIX_AT_INSTALL)
  # The prefix given to the install step must win over the configured one, for every file.
  list(APPEND args "-DCMAKE_INSTALL_PREFIX=${PREFIX}-unused")
  set(install_args --prefix "${PREFIX}")
else()
  list(APPEND args "-DCMAKE_INSTALL_PREFIX=${PREFIX}")
  set(install_args)
endif()
diffuse_run("configure diffuse" COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" ${args})
diffuse_run("install diffuse" COMMAND "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --config "${BUILD_TYPE}" ${install_args})

if(CHECK_SOURCE_UNCHANGED)
  diffuse_snapshot("${SOURCE_DIR}" source_after)
  if(NOT source_before STREQUAL source_after)
    foreach(entry IN LISTS source_after)
      if(NOT entry IN_LIST source_before)
        message(SEND_ERROR "written in the source tree: ${entry}")
      endif()
    endforeach()
    foreach(entry IN LISTS source_before)
      if(NOT entry IN_LIST source_after)
        message(SEND_ERROR "removed or touched in the source tree: ${entry}")
      endif()
    endforeach()
    message(FATAL_ERROR "configuring/installing diffuse modified its source tree ${SOURCE_DIR}")
  endif()
endif()
if(EXISTS "${PREFIX}-unused")
  message(FATAL_ERROR "the install wrote to the configured prefix ${PREFIX}-unused, not the --prefix it was given")
endif()

# Everything installed is under the prefix, and everything under the prefix was installed.
file(STRINGS "${BINARY_DIR}/install_manifest.txt" manifest)
if(NOT manifest)
  message(FATAL_ERROR "empty or missing ${BINARY_DIR}/install_manifest.txt")
endif()
foreach(file IN LISTS manifest)
  string(FIND "${file}" "${PREFIX}/" at)
  if(NOT at EQUAL 0)
    message(SEND_ERROR "installed outside the prefix ${PREFIX}: ${file}")
  endif()
endforeach()
file(GLOB_RECURSE present LIST_DIRECTORIES false "${PREFIX}/*")
list(SORT present)
list(SORT manifest)
if(NOT present STREQUAL manifest)
  message(FATAL_ERROR "the files under ${PREFIX} are not the install manifest:\n  present: ${present}\n  manifest: ${manifest}")
endif()

# The expected files, and the whole public header tree.
foreach(file IN ITEMS include/diffuse/ddpm.hpp share/cmake/diffuse/diffuse-config.cmake
                      share/cmake/diffuse/diffuse-config-version.cmake share/cmake/diffuse/diffuse-targets.cmake
                      share/pkgconfig/diffuse.pc)
  if(NOT EXISTS "${PREFIX}/${file}")
    message(SEND_ERROR "not installed: ${PREFIX}/${file}")
  endif()
endforeach()
file(GLOB_RECURSE source_headers RELATIVE "${SOURCE_DIR}/include" "${SOURCE_DIR}/include/*")
file(GLOB_RECURSE installed_headers RELATIVE "${PREFIX}/include" "${PREFIX}/include/*")
list(SORT source_headers)
list(SORT installed_headers)
if(NOT source_headers STREQUAL installed_headers)
  message(SEND_ERROR "the installed include/ differs from the source include/:\n  ${installed_headers}\n  ${source_headers}")
endif()
# Nothing architecture-specific in a header-only package.
foreach(dir IN ITEMS lib lib64 bin)
  if(EXISTS "${PREFIX}/${dir}")
    message(SEND_ERROR "a header-only install created ${PREFIX}/${dir}")
  endif()
endforeach()

# diffuse's own build flags (warnings, -march=native for its tests and examples) are never exported.
file(READ "${PREFIX}/share/cmake/diffuse/diffuse-targets.cmake" targets)
if(targets MATCHES "-march=|-Wall|-Wextra|-Wpedantic|diffuse_project_options")
  message(SEND_ERROR "the installed diffuse-targets.cmake exports diffuse's own build flags")
endif()

# Relocatable: no installed file names the build or source tree, nor (when installed with --prefix)
# the prefix itself.
set(forbidden "${BINARY_DIR}" "${SOURCE_DIR}")
if(PREFIX_AT_INSTALL)
  list(APPEND forbidden "${PREFIX}")
endif()
foreach(file IN LISTS manifest)
  if(file MATCHES "\\.hpp$")
    continue()
  endif()
  file(READ "${file}" content)
  foreach(path IN LISTS forbidden)
    string(FIND "${content}" "${path}" at)
    if(NOT at EQUAL -1)
      message(SEND_ERROR "${file} contains the absolute path ${path}")
    endif()
  endforeach()
endforeach()

list(LENGTH manifest count)
message(STATUS "diffuse installed to ${PREFIX}: ${count} files, all checked")
