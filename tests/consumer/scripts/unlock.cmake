# Gives write permission back to a read-only copy made by stage_source.cmake, so that the build
# directory can be deleted.   -DDIR=<dir>
cmake_minimum_required(VERSION 3.20)  # script mode: the policies of the project (IN_LIST, ...)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
diffuse_require(DIR)
if(EXISTS "${DIR}")
  diffuse_run("unlock" COMMAND chmod -R u+w "${DIR}")
endif()
