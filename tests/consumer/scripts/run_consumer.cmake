# Configures, builds and runs (with its own ctest) one consumer project; or, with
# -DEXPECT=configure-failure, checks that its configure fails with output matching FAILURE_REGEX.
#   -DSOURCE_DIR=<consumer project> -DBINARY_DIR=<fresh build dir> -DGENERATOR=... -DCXX_COMPILER=...
#   -DBUILD_TYPE=... [-DMAKE_PROGRAM=...] [-DCMAKE_ARGS=a|b|...] [-DARGS_FILE=<file of args, one a line>]
#   [-DEXPECT=run|configure-failure] [-DFAILURE_REGEX=...] [-DTEST_COUNT=<tests the project must register>]
#   [-DCTEST=<ctest executable>]
cmake_minimum_required(VERSION 3.20)  # script mode: the policies of the project (IN_LIST, ...)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
diffuse_require(SOURCE_DIR BINARY_DIR GENERATOR CXX_COMPILER BUILD_TYPE)
if(NOT EXPECT)
  set(EXPECT run)
endif()
if(NOT CTEST)
  get_filename_component(cmake_bin "${CMAKE_COMMAND}" DIRECTORY)
  find_program(CTEST NAMES ctest HINTS "${cmake_bin}" REQUIRED)
endif()

diffuse_toolchain_args(args)
string(REPLACE "|" ";" extra "${CMAKE_ARGS}")
list(APPEND args ${extra})
if(ARGS_FILE)
  file(STRINGS "${ARGS_FILE}" from_file)
  list(APPEND args ${from_file})
endif()

file(REMOVE_RECURSE "${BINARY_DIR}")  # always a fresh configure: no cached result may hide a failure
file(MAKE_DIRECTORY "${BINARY_DIR}")

if(EXPECT STREQUAL "configure-failure")
  diffuse_run("configure (must fail)" COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" ${args}
              EXPECT_FAILURE OUTPUT_VARIABLE out)
  string(REGEX REPLACE "[ \t\r\n]+" " " flat "${out}")  # CMake wraps its messages
  if(FAILURE_REGEX AND NOT flat MATCHES "${FAILURE_REGEX}")
    message(FATAL_ERROR "configure failed, but not for the expected reason: no match for '${FAILURE_REGEX}'")
  endif()
  message(STATUS "configure failed as expected")
  return()
endif()

diffuse_run("configure" COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" ${args})
diffuse_run("build" COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config "${BUILD_TYPE}" --parallel 2)
if(TEST_COUNT)
  diffuse_run("list tests" COMMAND "${CTEST}" -N -C "${BUILD_TYPE}" WORKING_DIRECTORY "${BINARY_DIR}" OUTPUT_VARIABLE out)
  if(NOT out MATCHES "Total Tests: ${TEST_COUNT}\n")
    message(FATAL_ERROR "the consumer build registers other tests than its own ${TEST_COUNT}")
  endif()
endif()
diffuse_run("run" COMMAND "${CTEST}" -C "${BUILD_TYPE}" --output-on-failure --no-tests=error
            WORKING_DIRECTORY "${BINARY_DIR}")
