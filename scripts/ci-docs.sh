#!/usr/bin/env bash
# Documentation check for CI: builds the API reference with Doxygen (docs/Doxyfile, over include/diffuse)
# and fails on any Doxygen warning, then checks that the code blocks of docs/**/*.md match the compiled
# files in docs/snippets/. The HTML lands in build-doxygen/html/index.html.
#   bash scripts/ci-docs.sh [output-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --docs
out=${1:-build-doxygen}
rm -rf "$out"
mkdir -p "$out"
export DIFFUSE_DOXYGEN_OUTPUT
DIFFUSE_DOXYGEN_OUTPUT=$(cd "$out" && pwd)
# WARN_AS_ERROR = FAIL_ON_WARNINGS in the Doxyfile: doxygen writes every warning to warnings.log and
# exits non-zero when there was one. An empty log is checked too, so a Doxygen that ignores the
# setting cannot pass with warnings.
status=0
doxygen docs/Doxyfile > "$out/doxygen.log" 2>&1 || status=$?
if [[ $status -ne 0 || -s "$out/warnings.log" ]]; then
  echo "ci-docs: Doxygen failed or warned; document or fix what these lines name:" >&2
  cat "$out/warnings.log" >&2 2>/dev/null || true
  grep -iE "warning|error" "$out/doxygen.log" >&2 || true
  exit 1
fi
cmake -DDOCS_DIR=docs -P tests/check_doc_snippets.cmake
echo "ci-docs: API reference without warnings: $out/html/index.html"
