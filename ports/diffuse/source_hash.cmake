# The hash of the diffuse sources this port installs, so that vcpkg's binary cache sees a change.
#
# vcpkg computes a package's ABI hash from the port's own files, not from sources the portfile reads
# from elsewhere: built from a checkout, a changed header would be "restored" from the cache as the old
# one. So the port carries source-tree.sha512, the hash of every file it installs, and the portfile
# refuses a tree that does not match it: a change to the sources is then a change to the port. After a
# change, `bash scripts/stamp-vcpkg-port.sh` writes the new hash (a ctest fails until it is written).
#
# The hash: SHA512 of the lines "<SHA512 of the file> <path>" of CMakeLists.txt, LICENSE, cmake/* and
# include/**, sorted by path.
#   include(source_hash.cmake) then diffuse_source_hash(<out> <tree>)          (the portfile)
#   cmake -DTREE=<tree> [-DWRITE=ON] -P ports/diffuse/source_hash.cmake        (check, or write the stamp)
function(diffuse_source_hash out tree)
  file(GLOB_RECURSE files RELATIVE "${tree}" "${tree}/include/*" "${tree}/cmake/*")
  list(APPEND files CMakeLists.txt LICENSE)
  list(SORT files)
  set(lines "")
  foreach(f IN LISTS files)
    file(SHA512 "${tree}/${f}" h)
    string(APPEND lines "${h} ${f}\n")
  endforeach()
  string(SHA512 total "${lines}")
  set(${out} "${total}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT TREE)
    message(FATAL_ERROR "pass -DTREE=<a diffuse source tree>")
  endif()
  diffuse_source_hash(hash "${TREE}")
  set(stamp "${CMAKE_CURRENT_LIST_DIR}/source-tree.sha512")
  if(WRITE)
    file(WRITE "${stamp}" "${hash}\n")
    message(STATUS "wrote ${stamp}")
  else()
    file(READ "${stamp}" recorded)
    string(STRIP "${recorded}" recorded)
    if(NOT recorded STREQUAL hash)
      message(FATAL_ERROR "the diffuse sources changed since ports/diffuse/source-tree.sha512 was written, so vcpkg's binary "
                          "cache would hand out the old package; run: bash scripts/stamp-vcpkg-port.sh")
    endif()
    message(STATUS "ports/diffuse/source-tree.sha512 matches ${TREE}")
  endif()
endif()
