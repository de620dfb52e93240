# Documentation checks, included from tests/CMakeLists.txt.

# 1. Every code sample of docs/ is a file in docs/snippets/, compiled here and run as a test (from the
#    repository root, so that relative paths such as models/digits work as the pages say); the markdown
#    blocks must match the files (tests/check_doc_snippets.cmake).
file(GLOB DIFFUSE_DOC_SNIPPETS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/snippets/*.cpp)
# The pages' text, to find which programs they quote the output of (<!-- output of: NAME.cpp -->).
file(GLOB_RECURSE DIFFUSE_DOC_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
set(DIFFUSE_DOC_TEXT "")
foreach(page IN LISTS DIFFUSE_DOC_PAGES)
  file(READ ${page} text)
  string(APPEND DIFFUSE_DOC_TEXT "${text}")
endforeach()
foreach(src IN LISTS DIFFUSE_DOC_SNIPPETS)
  get_filename_component(name ${src} NAME_WE)
  add_executable(doc_${name} ${src})
  target_link_libraries(doc_${name} PRIVATE diffuse::openmp diffuse_project_options)
  add_test(NAME doc_${name} COMMAND doc_${name})
  set_tests_properties(doc_${name} PROPERTIES WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} LABELS docs)
  # Whatever a page quotes of its output (<!-- output of: NAME.cpp --> blocks) is what it prints.
  string(FIND "${DIFFUSE_DOC_TEXT}" "<!-- output of: ${name}.cpp -->" quoted)
  if(NOT quoted EQUAL -1)
    add_test(NAME doc_${name}_quoted_output
             COMMAND ${CMAKE_COMMAND} -DDOCS_DIR=${PROJECT_SOURCE_DIR}/docs -DNAME=${name}.cpp -DPROGRAM=$<TARGET_FILE:doc_${name}>
                     -DWORKDIR=${PROJECT_SOURCE_DIR} -P ${CMAKE_CURRENT_SOURCE_DIR}/check_doc_output.cmake)
    set_tests_properties(doc_${name}_quoted_output PROPERTIES LABELS docs)
  endif()
endforeach()
add_test(NAME docs_snippets_match_markdown
         COMMAND ${CMAKE_COMMAND} -DDOCS_DIR=${PROJECT_SOURCE_DIR}/docs -P ${CMAKE_CURRENT_SOURCE_DIR}/check_doc_snippets.cmake)
set_tests_properties(docs_snippets_match_markdown PROPERTIES LABELS docs)

# 2. Compile-fail tests: common misuses must not compile, and the compiler's message must say what is
#    expected (tests/compile_fail/run.cmake). Each file's correct variant must compile, so a failure
#    always comes from the misuse.
set(diffuse_compile_fail_flags -std=c++20 -I${PROJECT_SOURCE_DIR}/include)
foreach(dep IN ITEMS Eigen3::Eigen xsimd nlohmann_json::nlohmann_json)
  if(TARGET ${dep})
    get_target_property(dep_includes ${dep} INTERFACE_INCLUDE_DIRECTORIES)
    foreach(dir IN LISTS dep_includes)
      if(dir AND NOT dir STREQUAL "/usr/include" AND NOT "-I${dir}" IN_LIST diffuse_compile_fail_flags)
        list(APPEND diffuse_compile_fail_flags -I${dir})
      endif()
    endforeach()
  endif()
endforeach()
string(REPLACE ";" "|" diffuse_compile_fail_flags_arg "${diffuse_compile_fail_flags}")  # run.cmake splits at |
file(GLOB DIFFUSE_COMPILE_FAIL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/*.cpp)
foreach(src IN LISTS DIFFUSE_COMPILE_FAIL_SOURCES)
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME compile_fail_${name}
           COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DSOURCE=${src} "-DFLAGS=${diffuse_compile_fail_flags_arg}"
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/run.cmake)
  set_tests_properties(compile_fail_${name} PROPERTIES LABELS compile_fail)
endforeach()

# The fast-math refusal depends on predefined macros, which differ between compilers: check it with
# both g++ and clang++ when both are installed, whichever one builds the project.
foreach(other IN ITEMS g++ clang++)
  find_program(DIFFUSE_OTHER_CXX_${other} NAMES ${other})
  if(DIFFUSE_OTHER_CXX_${other})
    foreach(name IN ITEMS fast_math ofast finite_math_only)
      add_test(NAME compile_fail_${name}_${other}
               COMMAND ${CMAKE_COMMAND} -DCXX=${DIFFUSE_OTHER_CXX_${other}} -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/${name}.cpp
                       "-DFLAGS=${diffuse_compile_fail_flags_arg}" -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/run.cmake)
      set_tests_properties(compile_fail_${name}_${other} PROPERTIES LABELS compile_fail)
    endforeach()
  endif()
endforeach()

# 3. One-definition rule: two translation units of one program include every public header.
add_executable(test_odr odr/odr_main.cpp odr/odr_other.cpp)
target_link_libraries(test_odr PRIVATE diffuse::openmp diffuse_project_options)
add_test(NAME test_odr COMMAND test_odr)

# 4. The getting-started find_package project, against the install made by the packaging tests.
add_test(NAME docs_getting_started_find_package
         COMMAND ${CMAKE_COMMAND} -DDOCS_DIR=${PROJECT_SOURCE_DIR}/docs -DBINARY_DIR=${CMAKE_CURRENT_BINARY_DIR}/docs_find_package
                 -DPREFIX=${CMAKE_CURRENT_BINARY_DIR}/consumer/prefix "-DGENERATOR=${CMAKE_GENERATOR}"
                 -DCXX_COMPILER=${CMAKE_CXX_COMPILER} -DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/docs_find_package.cmake)
set_tests_properties(docs_getting_started_find_package PROPERTIES FIXTURES_REQUIRED diffuse_prefix LABELS "docs;packaging" TIMEOUT 300)
