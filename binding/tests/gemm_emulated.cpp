// engine_tests_avx512_emulated: gemm.cpp with the AVX-512 kernel always available (it runs on SIMDe's emulation).
#define GRADMM_AVX512_EMULATED
#include "../src/gemm.cpp"
