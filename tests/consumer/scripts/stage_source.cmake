# Makes a read-only copy of the diffuse source tree (without .git and build directories) and a .tar.gz
# of it, for the read-only install test and the FetchContent-from-URL test.
#   -DSOURCE_DIR=<diffuse tree> -DSTAGE_DIR=<dir> -DNAME=<top directory name, e.g. diffuse-0.1.0>
#   -DARCHIVE=<.tar.gz to write> -DARGS_FILE=<file receiving the FetchContent -D arguments>
#   [-DEXCLUDE=<dir not to copy, e.g. our own build dir when it lies inside the tree>]
# Writes STAGE_DIR/NAME (mode a-w), ARCHIVE, and ARGS_FILE.
cmake_minimum_required(VERSION 3.20)  # script mode: the policies of the project (IN_LIST, ...)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
diffuse_require(SOURCE_DIR STAGE_DIR NAME ARCHIVE ARGS_FILE)
file(REAL_PATH "${SOURCE_DIR}" SOURCE_DIR)
if(EXCLUDE)
  file(REAL_PATH "${EXCLUDE}" EXCLUDE)
endif()

# A previous run's copy is read-only: give write permission back before removing it.
if(EXISTS "${STAGE_DIR}")
  diffuse_run("unlock previous copy" COMMAND chmod -R u+w "${STAGE_DIR}")
endif()
file(REMOVE_RECURSE "${STAGE_DIR}" "${ARCHIVE}" "${ARGS_FILE}")
set(copy "${STAGE_DIR}/${NAME}")
file(MAKE_DIRECTORY "${copy}")

# Top-level entries only: .git, build*/ (the .gitignore'd build trees), any directory holding a
# CMakeCache.txt and our own build directory stay behind.
file(GLOB entries LIST_DIRECTORIES true RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/*" "${SOURCE_DIR}/.*")
list(REMOVE_DUPLICATES entries)
foreach(entry IN LISTS entries)
  set(path "${SOURCE_DIR}/${entry}")
  if(entry MATCHES "^(\\.git|\\.|\\.\\.)$" OR (IS_DIRECTORY "${path}" AND entry MATCHES "^build")
     OR EXISTS "${path}/CMakeCache.txt")
    message(STATUS "not copied: ${entry}")
    continue()
  endif()
  if(EXCLUDE)
    string(FIND "${EXCLUDE}/" "${path}/" at)
    if(at EQUAL 0)
      message(STATUS "not copied (holds the test build dir): ${entry}")
      continue()
    endif()
  endif()
  file(COPY "${path}" DESTINATION "${copy}")
endforeach()
if(NOT EXISTS "${copy}/CMakeLists.txt" OR NOT EXISTS "${copy}/include/diffuse/ddpm.hpp")
  message(FATAL_ERROR "the copy ${copy} is not a diffuse tree")
endif()

diffuse_run("archive" COMMAND "${CMAKE_COMMAND}" -E tar czf "${ARCHIVE}" "${NAME}" WORKING_DIRECTORY "${STAGE_DIR}")
file(SHA256 "${ARCHIVE}" hash)
file(TO_CMAKE_PATH "${ARCHIVE}" archive_path)
file(WRITE "${ARGS_FILE}" "-DDIFFUSE_FETCH_URL=file://${archive_path}\n-DDIFFUSE_FETCH_SHA256=${hash}\n")

diffuse_run("make the copy read-only" COMMAND chmod -R a-w "${copy}")
message(STATUS "read-only copy: ${copy}; archive: ${ARCHIVE} (SHA256 ${hash})")
