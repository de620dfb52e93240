# One compile-fail test: the file must compile with -DDIFFUSE_COMPILE_FAIL_CONTROL (the correct use, so
# the failure below cannot come from a typo), must NOT compile without it (the misuse), and the
# compiler's output for the misuse must contain every "// expect: TEXT" line of the file: the
# diagnostic has to tell the user what to do, not just fail. A "// misuse-flags: FLAGS" line (flags
# separated by spaces) adds compiler flags to the misuse only: the misuse is then a build setting.
#   cmake -DCXX=<compiler> -DSOURCE=<file.cpp> "-DFLAGS=-std=c++20|-I..." -P run.cmake   (flags separated by |)
cmake_minimum_required(VERSION 3.20)
string(REPLACE "|" ";" FLAGS "${FLAGS}")
file(STRINGS "${SOURCE}" expects REGEX "^// expect: ")
if(NOT expects)
  message(FATAL_ERROR "${SOURCE} has no '// expect: TEXT' line")
endif()

file(STRINGS "${SOURCE}" misuse_flags_line REGEX "^// misuse-flags: ")
set(misuse_flags)
if(misuse_flags_line)
  string(REGEX REPLACE "^// misuse-flags: " "" misuse_flags "${misuse_flags_line}")
  separate_arguments(misuse_flags UNIX_COMMAND "${misuse_flags}")
endif()

execute_process(COMMAND "${CXX}" ${FLAGS} -DDIFFUSE_COMPILE_FAIL_CONTROL -fsyntax-only "${SOURCE}"
                RESULT_VARIABLE control_rc OUTPUT_VARIABLE control_out ERROR_VARIABLE control_out)
if(NOT control_rc EQUAL 0)
  message(FATAL_ERROR "the correct variant of ${SOURCE} does not compile:\n${control_out}")
endif()

execute_process(COMMAND "${CXX}" ${FLAGS} ${misuse_flags} -fsyntax-only "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it is a misuse that must be rejected at compile time")
endif()
foreach(line IN LISTS expects)
  string(REGEX REPLACE "^// expect: " "" text "${line}")
  string(FIND "${out}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${SOURCE} failed to compile as it should, but the diagnostic does not say\n  ${text}\n"
                        "compiler output:\n${out}")
  endif()
endforeach()
string(REGEX MATCHALL "error:" errors "${out}")
list(LENGTH errors n)
message(STATUS "${SOURCE}: rejected with the expected message (${n} error line(s))")
