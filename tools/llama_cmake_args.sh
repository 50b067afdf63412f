#!/bin/sh
# CMAKE_ARGS for building llama-cpp-python on this machine.
# Not GGML_NATIVE: -march=native compiles ggml's AMX kernels wherever the CPU lists AMX, and VMs
# that list AMX without granting the tile state die on the first `tilezero` (SIGILL, seen here).
# So: the CPU's own AVX2 / AVX-512 feature set, read from /proc/cpuinfo, and never AMX.
flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null)
has() { echo "$flags" | grep -qw "$1"; }
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if has avx2; then args="$args -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"; fi
if has avx_vnni; then args="$args -DGGML_AVX_VNNI=ON"; fi
if has avx512f; then args="$args -DGGML_AVX512=ON"; fi
if has avx512vbmi; then args="$args -DGGML_AVX512_VBMI=ON"; fi
if has avx512_vnni; then args="$args -DGGML_AVX512_VNNI=ON"; fi
if has avx512_bf16; then args="$args -DGGML_AVX512_BF16=ON"; fi
echo "$args ${CMAKE_ARGS_EXTRA:-}"
