# Documentation checks, included from tests/CMakeLists.txt.

# 1. Every code sample of docs/ is a file in docs/snippets/, compiled here and run as a test (from the
#    repository root, so that relative paths such as models/digits work as the pages say); the markdown
#    blocks must match the files (tests/check_doc_snippets.cmake).
file(GLOB DIFFUSE_DOC_SNIPPETS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/snippets/*.cpp)
foreach(src IN LISTS DIFFUSE_DOC_SNIPPETS)
  get_filename_component(name ${src} NAME_WE)
  add_executable(doc_${name} ${src})
  target_link_libraries(doc_${name} PRIVATE diffuse::openmp diffuse_project_options)
  add_test(NAME doc_${name} COMMAND doc_${name})
  set_tests_properties(doc_${name} PROPERTIES WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} LABELS docs)
endforeach()
add_test(NAME docs_snippets_match_markdown
         COMMAND ${CMAKE_COMMAND} -DDOCS_DIR=${PROJECT_SOURCE_DIR}/docs -P ${CMAKE_CURRENT_SOURCE_DIR}/check_doc_snippets.cmake)
set_tests_properties(docs_snippets_match_markdown PROPERTIES LABELS docs)
