# Helpers shared by the consumer-test driver scripts (run with cmake -P).

# diffuse_run(<what> COMMAND ... [WORKING_DIRECTORY d] [EXPECT_FAILURE] [OUTPUT_VARIABLE v])
# Runs a command, echoes what it printed, and stops the script if it failed (or, with
# EXPECT_FAILURE, if it succeeded).
function(diffuse_run what)
  cmake_parse_arguments(PARSE_ARGV 1 arg "EXPECT_FAILURE" "WORKING_DIRECTORY;OUTPUT_VARIABLE" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
  endif()
  string(REPLACE ";" " " shown "${arg_COMMAND}")
  message(STATUS "${what}: ${shown}")
  execute_process(COMMAND ${arg_COMMAND} WORKING_DIRECTORY "${arg_WORKING_DIRECTORY}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("${out}")
  if(arg_EXPECT_FAILURE)
    if(rc EQUAL 0)
      message(FATAL_ERROR "${what} succeeded; it was expected to fail")
    endif()
  elseif(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc})")
  endif()
  if(arg_OUTPUT_VARIABLE)
    set(${arg_OUTPUT_VARIABLE} "${out}" PARENT_SCOPE)
  endif()
endfunction()

# diffuse_require(<var>...): stops unless every variable is set (-D<var>=... on the command line).
macro(diffuse_require)
  foreach(_var ${ARGN})
    if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
      message(FATAL_ERROR "${CMAKE_CURRENT_LIST_FILE}: pass -D${_var}=...")
    endif()
  endforeach()
endmacro()

# The cmake arguments that make a nested configure use the same generator and compiler as ours.
macro(diffuse_toolchain_args out)
  set(${out} -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  if(MAKE_PROGRAM)
    list(APPEND ${out} "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
endmacro()

# diffuse_snapshot(<dir> <var>): the sorted list of every file and directory under <dir> with its
# modification time, to prove a configure/install wrote nothing there (even when run as root, where
# a read-only mode does not stop writes).
function(diffuse_snapshot dir var)
  file(GLOB_RECURSE entries LIST_DIRECTORIES true "${dir}/*")
  list(SORT entries)
  set(snapshot)
  foreach(entry IN LISTS entries)
    file(TIMESTAMP "${entry}" stamp "%Y-%m-%dT%H:%M:%S" UTC)
    list(APPEND snapshot "${entry}@${stamp}")
  endforeach()
  set(${var} "${snapshot}" PARENT_SCOPE)
endfunction()
