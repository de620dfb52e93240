# diffuse::openmp for consumers whose package manager writes diffuse's CMake config itself (Conan's
# CMakeDeps, from conanfile.py's package_info): diffuse::diffuse plus OpenMP when the compiler has it,
# as the config that diffuse's own install exports defines it.
if(NOT TARGET diffuse::openmp)
  find_package(OpenMP COMPONENTS CXX QUIET)
  add_library(diffuse::openmp INTERFACE IMPORTED)
  if(OpenMP_CXX_FOUND)
    set_target_properties(diffuse::openmp PROPERTIES INTERFACE_LINK_LIBRARIES "diffuse::diffuse;OpenMP::OpenMP_CXX")
  else()
    set_target_properties(diffuse::openmp PROPERTIES INTERFACE_LINK_LIBRARIES "diffuse::diffuse")
  endif()
endif()
