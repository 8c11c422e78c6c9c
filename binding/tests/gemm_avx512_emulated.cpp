// engine_tests_avx512_emulated: the AVX-512 kernel's source on SIMDe's portable AVX-512 (built for AVX2 + FMA), so
// its tiling, packing and edge handling are checked on machines without AVX-512. Correctness only, not speed.
#define GRADMM_AVX512_EMULATED
#include "../src/gemm_avx512.cpp"
