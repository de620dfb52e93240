cmake_minimum_required(VERSION 3.20)
project(my_app LANGUAGES CXX)
find_package(diffuse 0.1 CONFIG REQUIRED)
add_executable(my_app first_program.cpp)
target_link_libraries(my_app PRIVATE diffuse::diffuse)   # or diffuse::openmp
