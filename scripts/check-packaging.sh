#!/usr/bin/env bash
# Checks the package recipes without vcpkg or conan (neither client is needed; nothing is downloaded):
#   1. ports/diffuse/vcpkg.json parses as JSON and names diffuse, the project's version and its
#      dependencies; portfile.cmake makes the expected calls; conanfile.py and test_package/conanfile.py
#      parse as Python and the recipe declares name, version, package_type, requires and package_info.
#   2. Replays ports/diffuse/portfile.cmake by hand: configure the tree the way vcpkg_cmake_configure
#      does (tests/examples/benchmarks off, release only), install it into a vcpkg-style package
#      directory, move share/cmake/diffuse to share/diffuse (vcpkg_cmake_config_fixup), drop the debug/
#      and lib/ directories, install usage and copyright; then runs vcpkg-like post-build checks and
#      builds and runs test_package/ against it with plain CMake.
#   3. Replays conanfile.py's package(): install, LICENSE into licenses/, share/ removed; then builds and
#      runs test_package/ through a stand-in for the diffuse-config.cmake that CMakeDeps writes from
#      package_info().
# Usage: bash scripts/check-packaging.sh [--workdir DIR]   (default: a temporary directory, removed after)
# Environment: CMAKE (default cmake), PYTHON (default python3), CXX and CMAKE_GENERATOR as for cmake.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMAKE=${CMAKE:-cmake}
PYTHON=${PYTHON:-python3}
workdir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) workdir=$2; shift 2 ;;
    --workdir=*) workdir=${1#--workdir=}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "check-packaging: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$workdir" ]; then
  workdir=$(mktemp -d)
  trap 'rm -rf "$workdir"' EXIT
else
  rm -rf "$workdir"
  mkdir -p "$workdir"
fi
workdir=$(cd "$workdir" && pwd)

step() { printf '\n== %s\n' "$*"; }
fail() { echo "check-packaging: FAIL: $*" >&2; exit 1; }
run() { echo "+ $*"; "$@"; }

version=$(sed -n 's/^project(diffuse VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || fail "no project(diffuse VERSION ...) in $root/CMakeLists.txt"
echo "diffuse $version in $root; work directory $workdir"

# The options every replay configures with (those of portfile.cmake / conanfile.py's generate()).
diffuse_options=(-DCMAKE_BUILD_TYPE=Release -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_EXAMPLES=OFF
                 -DDIFFUSE_BUILD_BENCHMARKS=OFF -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)

# ---------------------------------------------------------------------------------------------------
step "1. recipe files: syntax and contents"
"$PYTHON" - "$root" "$version" <<'PY'
import ast, json, os, re, sys

root, version = sys.argv[1], sys.argv[2]
errors = []
def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        errors.append(what)

# vcpkg
port_dir = os.path.join(root, "ports", "diffuse")
with open(os.path.join(port_dir, "vcpkg.json"), encoding="utf-8") as f:
    port = json.load(f)  # raises on a syntax error
check(port.get("name") == "diffuse", "vcpkg.json: name is diffuse")
check(port.get("version") == version, f"vcpkg.json: version {port.get('version')} is the project's {version}")
deps = {}
for d in port.get("dependencies", []):
    deps[d if isinstance(d, str) else d["name"]] = d
for name in ("eigen3", "xsimd", "nlohmann-json"):
    check(name in deps, f"vcpkg.json: depends on {name}")
for name in ("vcpkg-cmake", "vcpkg-cmake-config"):
    check(isinstance(deps.get(name), dict) and deps[name].get("host") is True, f"vcpkg.json: host dependency {name}")
with open(os.path.join(port_dir, "portfile.cmake"), encoding="utf-8") as f:
    portfile = f.read()
for text in ("vcpkg_cmake_configure(", "-DDIFFUSE_BUILD_TESTS=OFF", "-DDIFFUSE_BUILD_EXAMPLES=OFF",
             "vcpkg_cmake_install()", "vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/diffuse)",
             'file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug"', "vcpkg_install_copyright(",
             "vcpkg_from_git(", "DIFFUSE_SOURCE_PATH"):
    check(text in portfile, f"portfile.cmake: {text}")
check(os.path.isfile(os.path.join(port_dir, "usage")), "ports/diffuse/usage exists")
# The consumer manifest of docs/getting-started.md (manifest mode): it depends on diffuse, has a
# baseline (needed for the port's version>= constraints) and its overlay points at this port.
example = os.path.join(root, "ports", "example-manifest")
with open(os.path.join(example, "vcpkg.json"), encoding="utf-8") as f:
    manifest = json.load(f)
check("diffuse" in manifest.get("dependencies", []), "example-manifest/vcpkg.json depends on diffuse")
check(re.fullmatch(r"[0-9a-f]{40}", manifest.get("builtin-baseline", "")) is not None, "example-manifest/vcpkg.json has a builtin-baseline")
with open(os.path.join(example, "vcpkg-configuration.json"), encoding="utf-8") as f:
    overlays = json.load(f).get("overlay-ports", [])
check(any(os.path.realpath(os.path.join(example, o)) == os.path.realpath(port_dir) for o in overlays),
      "example-manifest/vcpkg-configuration.json overlays ports/diffuse")

# Conan
def parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)  # raises on a syntax error

def recipe_class(tree):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "ConanFile" for b in node.bases):
            return node
    return None

def calls(node, method):
    """Positional string arguments of every self.<method>(...) call under node."""
    found = []
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method:
            found.append([a.value for a in n.args if isinstance(a, ast.Constant)])
    return found

recipe = recipe_class(parse(os.path.join(root, "conanfile.py")))
check(recipe is not None, "conanfile.py: a ConanFile class")
if recipe is not None:
    attrs = {t.id: n.value.value for n in recipe.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
             for t in n.targets if isinstance(t, ast.Name)}
    check(attrs.get("name") == "diffuse", "conanfile.py: name = diffuse")
    check(attrs.get("version") == version, f"conanfile.py: version {attrs.get('version')} is the project's {version}")
    check(attrs.get("package_type") == "header-library", "conanfile.py: package_type = header-library")
    methods = {n.name: n for n in recipe.body if isinstance(n, ast.FunctionDef)}
    for m in ("requirements", "generate", "package", "package_info"):
        check(m in methods, f"conanfile.py: defines {m}()")
    reqs = {a[0].split("/")[0]: a[0].split("/", 1)[1] for a in calls(methods.get("requirements", recipe), "requires") if a}
    # The same ranges as cmake/diffuse_dependency_versions.cmake ([first, end)).
    with open(os.path.join(root, "cmake", "diffuse_dependency_versions.cmake"), encoding="utf-8") as f:
        ranges = dict(re.findall(r"^set\(DIFFUSE_(\w+)_VERSION_RANGE ([0-9. ]+)\)", f.read(), re.M))
    for conan_name, cmake_name in (("eigen", "EIGEN"), ("xsimd", "XSIMD"), ("nlohmann_json", "NLOHMANN_JSON")):
        first, end = ranges[cmake_name].split()
        want = re.compile(r"^\[>=" + re.escape(first) + r"(\.0)* <" + re.escape(end) + r"\]$")
        check(bool(want.match(reqs.get(conan_name, ""))),
              f"conanfile.py: requires {conan_name}/[>={first} <{end}] (found {reqs.get(conan_name)})")
    # vcpkg.json: the lower bounds of the same ranges ("version>=" is all a port can state).
    vcpkg_min = {d["name"]: d.get("version>=") for d in port.get("dependencies", []) if isinstance(d, dict)}
    for vcpkg_name, cmake_name in (("eigen3", "EIGEN"), ("xsimd", "XSIMD"), ("nlohmann-json", "NLOHMANN_JSON")):
        first = ranges[cmake_name].split()[0]
        got = vcpkg_min.get(vcpkg_name) or ""
        check(re.fullmatch(re.escape(first) + r"(\.0)*", got) is not None, f"vcpkg.json: {vcpkg_name} version>= {first} (found {got})")
    props = {tuple(a[:2]) for a in calls(methods.get("package_info", recipe), "set_property") if len(a) >= 2}
    check(("cmake_file_name", "diffuse") in props, "conanfile.py: cmake_file_name diffuse")
    check(("cmake_target_name", "diffuse::diffuse") in props, "conanfile.py: cmake_target_name diffuse::diffuse")
    check(any(a and a[0] == "install" for a in [[getattr(n.func, "attr", None)] for n in ast.walk(methods.get("package", recipe))
                                               if isinstance(n, ast.Call)]), "conanfile.py: package() runs cmake.install()")
test_recipe = recipe_class(parse(os.path.join(root, "test_package", "conanfile.py")))
check(test_recipe is not None, "test_package/conanfile.py: a ConanFile class")
for f in ("CMakeLists.txt", "test_package.cpp"):
    check(os.path.isfile(os.path.join(root, "test_package", f)), f"test_package/{f} exists")
if errors:
    sys.exit(f"{len(errors)} recipe check(s) failed")
PY

# ---------------------------------------------------------------------------------------------------
step "2. vcpkg port, replayed: configure, install, config fixup, header-only cleanup"
# vcpkg's directory names: buildtrees/<port>/<triplet>-rel and packages/<port>_<triplet>.
source_path=$root   # portfile.cmake: the checkout holding ports/diffuse (or DIFFUSE_SOURCE_PATH)
buildtree=$workdir/vcpkg/buildtrees/diffuse/x64-linux-rel
pkg=$workdir/vcpkg/packages/diffuse_x64-linux
run "$CMAKE" -S "$source_path" -B "$buildtree" "${diffuse_options[@]}" -DCMAKE_INSTALL_PREFIX="$pkg" \
    -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_BINDIR=bin -DCMAKE_INSTALL_INCLUDEDIR=include >/dev/null
run "$CMAKE" --install "$buildtree" >/dev/null                               # vcpkg_cmake_install
[ -f "$pkg/share/cmake/diffuse/diffuse-config.cmake" ] || fail "no share/cmake/diffuse/diffuse-config.cmake to fix up"
# vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/diffuse): move the files to share/diffuse, remove
# share/cmake, and rewrite the prefix computations for the new depth (two levels below the prefix).
cat > "$workdir/vcpkg/config_fixup.cmake" <<'CM'
file(MAKE_DIRECTORY "${PKG}/share/diffuse")
file(GLOB files "${PKG}/share/cmake/diffuse/*")
file(COPY ${files} DESTINATION "${PKG}/share/diffuse")
file(REMOVE_RECURSE "${PKG}/share/cmake")
file(GLOB_RECURSE cmakes "${PKG}/share/diffuse/*.cmake")
foreach(f IN LISTS cmakes)
  file(READ "${f}" contents)
  string(REGEX REPLACE
[[get_filename_component\(_IMPORT_PREFIX "\${CMAKE_CURRENT_LIST_FILE}" PATH\)(
get_filename_component\(_IMPORT_PREFIX "\${_IMPORT_PREFIX}" PATH\))*]]
[[get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_FILE}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)]] contents "${contents}")
  string(REGEX REPLACE [[get_filename_component\(PACKAGE_PREFIX_DIR "\${CMAKE_CURRENT_LIST_DIR}/\.\./(\.\./)*" ABSOLUTE\)]]
         [[get_filename_component(PACKAGE_PREFIX_DIR "${CMAKE_CURRENT_LIST_DIR}/../../" ABSOLUTE)]] contents "${contents}")
  string(REPLACE "${PKG}" [[${_IMPORT_PREFIX}]] contents "${contents}")
  file(WRITE "${f}" "${contents}")
endforeach()
CM
run "$CMAKE" -DPKG="$pkg" -P "$workdir/vcpkg/config_fixup.cmake"
rm -rf "$pkg/debug" "$pkg/lib"                                               # header-only cleanup
cp "$root/ports/diffuse/usage" "$pkg/share/diffuse/usage"                    # usage
cp "$source_path/LICENSE" "$pkg/share/diffuse/copyright"                     # vcpkg_install_copyright

echo "post-build checks:"
for f in include/diffuse/ddpm.hpp share/diffuse/diffuse-config.cmake share/diffuse/diffuse-config-version.cmake \
         share/diffuse/diffuse-targets.cmake share/diffuse/usage share/diffuse/copyright share/pkgconfig/diffuse.pc; do
  [ -f "$pkg/$f" ] || fail "missing $f in the package"
done
for d in bin lib debug share/cmake; do
  [ ! -e "$pkg/$d" ] || fail "a header-only package holds $d/"
done
# vcpkg rejects absolute paths of the build machine in installed files.
if grep -rIl -e "$pkg" -e "$buildtree" -e "$source_path/" "$pkg/share"; then
  fail "the files above name an absolute path of the package, build or source tree"
fi
# The pkg-config file still resolves (vcpkg_fixup_pkgconfig runs pkg-config on it).
if command -v pkg-config >/dev/null; then
  cflags=$(PKG_CONFIG_PATH="$pkg/share/pkgconfig" pkg-config --cflags diffuse)
  echo "pkg-config --cflags diffuse: $cflags"
  case " $cflags " in *" -I$pkg/share/pkgconfig/../../include "*) ;; *) fail "diffuse.pc does not point at $pkg/include" ;; esac
fi
echo "ok: package layout"

step "2b. test_package/ against the vcpkg-style package, plain CMake"
tp=$workdir/test_package-vcpkg
run "$CMAKE" -S "$root/test_package" -B "$tp" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$pkg" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
grep -qx "diffuse_DIR:PATH=$pkg/share/diffuse" "$tp/CMakeCache.txt" || fail "test_package did not find diffuse in $pkg/share/diffuse"
run "$CMAKE" --build "$tp" --config Release >/dev/null
run "$tp/test_package"
run "$tp/test_package_openmp"

# ---------------------------------------------------------------------------------------------------
step "3. Conan recipe, replayed: build() configures, package() installs and keeps include/ and licenses/"
cbuild=$workdir/conan/build
cpkg=$workdir/conan/package
run "$CMAKE" -S "$root" -B "$cbuild" "${diffuse_options[@]}" >/dev/null        # build(): cmake.configure()
run "$CMAKE" --install "$cbuild" --prefix "$cpkg" >/dev/null                  # package(): cmake.install()
mkdir -p "$cpkg/licenses" && cp "$root/LICENSE" "$cpkg/licenses/"             # package(): copy LICENSE
rm -rf "$cpkg/share"                                                          # package(): rmdir share/...
mkdir -p "$cpkg/cmake" && cp "$root/cmake/diffuse-openmp.cmake" "$cpkg/cmake/"     # package(): the build module
top=$(cd "$cpkg" && ls -A | sort | tr '\n' ' ')
[ "$top" = "cmake include licenses " ] || fail "the Conan package holds '$top'; expected 'cmake include licenses '"

# What CMakeDeps writes from package_info(): cmake_file_name diffuse, target diffuse::diffuse, the
# include dir, cxxflags -ffp-contract=off, and the three requirements' targets.
deps=$workdir/conan/generators
mkdir -p "$deps"
cat > "$deps/diffuse-config.cmake" <<CM
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 NO_MODULE)
find_dependency(xsimd)
find_dependency(nlohmann_json)
if(NOT TARGET xtl)  # Debian's xsimd names an xtl it does not need (Conan's xsimd does not)
  add_library(xtl INTERFACE IMPORTED)
endif()
if(NOT TARGET diffuse::diffuse)
  add_library(diffuse::diffuse INTERFACE IMPORTED)
  set_target_properties(diffuse::diffuse PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "$cpkg/include"
    INTERFACE_COMPILE_OPTIONS "\$<\$<COMPILE_LANG_AND_ID:CXX,GNU,Clang,AppleClang>:-ffp-contract=off>"
    INTERFACE_LINK_LIBRARIES "Eigen3::Eigen;xsimd;nlohmann_json::nlohmann_json")
endif()
include("$cpkg/cmake/diffuse-openmp.cmake")  # package_info(): cmake_build_modules
CM
tp=$workdir/test_package-conan
run "$CMAKE" -S "$root/test_package" -B "$tp" -DCMAKE_BUILD_TYPE=Release -Ddiffuse_DIR="$deps" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
run "$CMAKE" --build "$tp" --config Release >/dev/null
run "$tp/test_package"
run "$tp/test_package_openmp"

printf '\ncheck-packaging: all checks passed\n'
