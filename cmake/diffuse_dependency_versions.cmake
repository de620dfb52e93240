# The dependency releases diffuse is tested with, in one place: the build (diffuse_dependencies.cmake)
# and the installed package config (diffuse-config.cmake) both check against it. diffuse.pc.in,
# ports/diffuse/vcpkg.json and conanfile.py state the same range; scripts/check-packaging.sh checks that
# they agree with this file.
#
# Each range is [first, end): the first release supported and the first one that is not.
#   xsimd 8.1 (Debian 12) through 14.x (vcpkg's 14.3, ConanCenter's 13.0-14.2); CI runs 8.1, 13.2, 14.3.
#   Eigen 3.4 (Debian 12, ConanCenter) through 5.0 (vcpkg's and ConanCenter's 5.0.1); CI runs both.
#   nlohmann_json 3.9 through 3.x (Debian 12's 3.11.2; ConanCenter's 3.11 and 3.12).
set(DIFFUSE_XSIMD_VERSION_RANGE 8.1 15)
set(DIFFUSE_EIGEN_VERSION_RANGE 3.4 5.1)
set(DIFFUSE_NLOHMANN_JSON_VERSION_RANGE 3.9 4)

# diffuse_version_in_range(<out-var> <name> <found-version> <first> <end>): sets <out-var> to an empty
# string when first <= found < end, and to a message naming the version found and the range otherwise.
function(diffuse_version_in_range out name found first end)
  if("${found}" STREQUAL "")
    set(${out} "diffuse could not tell which ${name} release it found (no version); it supports ${name} ${first} up to (not including) ${end}" PARENT_SCOPE)
  elseif(found VERSION_LESS first OR NOT found VERSION_LESS end)
    set(${out} "diffuse supports ${name} ${first} up to (not including) ${end}; found ${name} ${found}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()
