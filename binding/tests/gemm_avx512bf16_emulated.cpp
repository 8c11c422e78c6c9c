// gemm_bf16_tests_emulated: the AVX512_BF16 kernel's source on SIMDe's portable AVX-512 (built for AVX2 + FMA), so its
// tiling, packing and edge handling are checked on machines without AVX512_BF16. Correctness only, not speed.
#ifndef GRADMM_BF16_EMULATED
#define GRADMM_BF16_EMULATED
#endif
#include "../src/gemm_avx512bf16.cpp"
