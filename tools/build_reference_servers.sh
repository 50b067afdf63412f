#!/bin/sh
# Build llama-server from the llama.cpp tree vendored in the pinned llama-cpp-python sdist, so the
# reference server runs the same llama.cpp as the in-process engine. Output is cached: a second
# run with the binary present does nothing.
set -eu
PY=${PYTHON:-.venv/bin/python}
CACHE=${REFERENCE_CACHE:-.cache/reference-servers}
# The pin lives in pyproject.toml (cpu extra); read it there so the two cannot drift.
VERSION=$(sed -n 's/.*"llama-cpp-python\(\[[a-z,]*\]\)\{0,1\}==\([0-9.]*\)".*/\2/p' pyproject.toml | head -n1)
[ -n "$VERSION" ] || { echo "build_reference_servers: no llama-cpp-python pin in pyproject.toml" >&2; exit 2; }
OUT="$CACHE/llama.cpp-$VERSION"
BIN="$OUT/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN (cached)"; exit 0; fi
mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  "$PY" -m pip download --quiet --no-binary :all: --no-deps --dest "$CACHE" "llama-cpp-python==$VERSION"
fi
SRC="$CACHE/src-$VERSION"
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xzf "$SDIST" -C "$SRC" --strip-components=1
fi
BUILD="$CACHE/build-$VERSION"
# Same CPU flags as the in-process build (never GGML_NATIVE: AMX SIGILL, see the script).
# shellcheck disable=SC2046
cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
  $(sh tools/llama_cmake_args.sh) >"$CACHE/cmake-configure.log"
cmake --build "$BUILD" --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
mkdir -p "$OUT/bin.tmp"
cp "$BUILD/bin/llama-server" "$OUT/bin.tmp/"
# Publish atomically: an interrupted build leaves no binary that looks complete.
rm -rf "$OUT/bin" && mv "$OUT/bin.tmp" "$OUT/bin"
echo "$BIN"
