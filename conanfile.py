"""Conan 2 recipe of diffuse, a header-only C++20 library (run from a checkout: `conan create .`)."""
import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir

required_conan_version = ">=2.0"


class DiffuseConan(ConanFile):
    name = "diffuse"
    version = "0.1.0"
    description = "Header-only C++20 library for diffusion models: noise schedules, DDPM and DDIM samplers"
    license = "MIT"
    topics = ("diffusion", "ddpm", "ddim", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*"
    no_copy_source = True

    def layout(self):
        # build-conan/, not build/: a local `conan build .` stays out of the project's own build tree.
        cmake_layout(self, build_folder="build-conan")

    def requirements(self):
        # The versions Debian 12 ships and the tests run with; diffuse's CMake needs Eigen >= 3.4,
        # xsimd >= 8 and nlohmann_json >= 3.9.
        self.requires("eigen/3.4.0")
        self.requires("xsimd/8.1.0")
        self.requires("nlohmann_json/3.11.2")

    def package_id(self):
        self.info.clear()

    def validate(self):
        # The headers need C++20 (profile: compiler.cppstd=20 or gnu20).
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, 20)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["DIFFUSE_BUILD_TESTS"] = False
        tc.cache_variables["DIFFUSE_BUILD_EXAMPLES"] = False
        tc.cache_variables["DIFFUSE_BUILD_BENCHMARKS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        # Nothing to compile: configuring checks the dependencies and prepares the install rules.
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan's generators (CMakeDeps, PkgConfigDeps) write their own from package_info().
        rmdir(self, os.path.join(self.package_folder, "share", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "share", "pkgconfig"))
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "diffuse")
        self.cpp_info.set_property("cmake_target_name", "diffuse::diffuse")
        self.cpp_info.set_property("pkg_config_name", "diffuse")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.resdirs = []
        self.cpp_info.frameworkdirs = []
        # The noise generator promises the same bits on every compiler: no fused multiply-add.
        if str(self.settings.compiler) in ("gcc", "clang", "apple-clang"):
            self.cpp_info.cxxflags = ["-ffp-contract=off"]
