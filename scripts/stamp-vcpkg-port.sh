#!/usr/bin/env bash
# Records the hash of the sources in ports/diffuse/source-tree.sha512 (see ports/diffuse/source_hash.cmake):
# run after changing anything under include/ or cmake/, or CMakeLists.txt, and commit the stamp with it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmake -DTREE="$root" -DWRITE=ON -P "$root/ports/diffuse/source_hash.cmake"
