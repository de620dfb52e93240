"""Conan 2 recipe of diffuse, a header-only C++20 library (run from a checkout: `conan create .`)."""
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir
from conan.tools.scm import Version

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

    # The oldest compilers with the C++20 the headers use (concepts, std::span, designated initialisers).
    _compilers_minimum_version = {"gcc": "11", "clang": "14", "apple-clang": "14", "msvc": "193"}

    def layout(self):
        # build-conan/, not build/: a local `conan build .` stays out of the project's own build tree.
        cmake_layout(self, build_folder="build-conan")

    def requirements(self):
        # The tested ranges of cmake/diffuse_dependency_versions.cmake. They hold what ConanCenter serves
        # (xsimd 13.0-14.2, Eigen 3.4.0/3.4.1/5.0.1, nlohmann_json 3.11/3.12) and Debian 12's xsimd 8.1;
        # Conan resolves each to the newest release in range it finds.
        self.requires("eigen/[>=3.4.0 <5.1]")
        self.requires("xsimd/[>=8.1.0 <15]")
        self.requires("nlohmann_json/[>=3.9.0 <4]")

    def package_id(self):
        self.info.clear()

    def validate(self):
        # As ConanCenter's header-only recipes do: the consumer's C++ standard and compiler must be new
        # enough. Conan's default profile (conan profile detect) says gnu17 for GCC 12, so say how to fix it.
        try:
            check_min_cppstd(self, 20)
        except ConanInvalidConfiguration as e:
            raise ConanInvalidConfiguration(
                f"{str(e).rstrip('.')}. diffuse's headers are C++20: set compiler.cppstd=20 (or gnu20) in your profile, "
                f"or pass -s compiler.cppstd=20 to conan install / conan create") from None
        minimum = self._compilers_minimum_version.get(str(self.settings.compiler))
        if minimum and Version(self.settings.compiler.version) < minimum:
            raise ConanInvalidConfiguration(
                f"diffuse needs {self.settings.compiler} >= {minimum} for C++20; the profile says {self.settings.compiler.version}")

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["DIFFUSE_BUILD_TESTS"] = False
        tc.cache_variables["DIFFUSE_BUILD_EXAMPLES"] = False
        tc.cache_variables["DIFFUSE_BUILD_BENCHMARKS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        # Nothing to compile: configuring checks the dependency versions and prepares the install rules.
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan's generators (CMakeDeps, PkgConfigDeps) write their own configs from package_info().
        rmdir(self, os.path.join(self.package_folder, "share"))
        # ... which cannot express diffuse::openmp (diffuse::diffuse plus the compiler's OpenMP): a
        # CMake build module defines it.
        copy(self, "diffuse-openmp.cmake", src=os.path.join(self.source_folder, "cmake"),
             dst=os.path.join(self.package_folder, "cmake"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "diffuse")
        self.cpp_info.set_property("cmake_target_name", "diffuse::diffuse")
        self.cpp_info.set_property("cmake_build_modules", [os.path.join("cmake", "diffuse-openmp.cmake")])
        self.cpp_info.set_property("pkg_config_name", "diffuse")
        self.cpp_info.builddirs = ["cmake"]
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.resdirs = []
        self.cpp_info.frameworkdirs = []
        # The noise generator promises the same bits on every compiler: no fused multiply-add.
        if str(self.settings.compiler) in ("gcc", "clang", "apple-clang"):
            self.cpp_info.cxxflags = ["-ffp-contract=off"]
