// gemm_bf16_tests_emulated: gemm_bf16.cpp with the AVX512_BF16 kernel always available (it runs on SIMDe's emulation).
#ifndef GRADMM_BF16_EMULATED
#define GRADMM_BF16_EMULATED
#endif
#include "../src/gemm_bf16.cpp"
