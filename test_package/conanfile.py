"""Conan 2 test_package of diffuse: builds and runs test_package.cpp on the created package, once with
diffuse::diffuse and once with diffuse::openmp."""
import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class DiffuseTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        # No CMakeUserPresets.json in the source tree: `conan create` leaves test_package/ as it found it
        # but for the ignored build/ folder.
        tc.user_presets_path = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            for program in ("test_package", "test_package_openmp"):
                self.run(os.path.join(self.cpp.build.bindir, program), env="conanrun")
