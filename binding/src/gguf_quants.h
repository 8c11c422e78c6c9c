// Dequantization of GGUF tensor data (ggml block formats) to float32, bit-identical to the `gguf` Python package's
// gguf.quants.dequantize (numpy float32 arithmetic in the same operation order; see gguf_quants.cpp).
#pragma once

#include <cstdint>

namespace gradmm {

// ggml type ids as in GGUF: F32=0 F16=1 Q4_0=2 Q4_1=3 Q5_0=6 Q5_1=7 Q8_0=8 Q4_K=12 Q5_K=13 Q6_K=14 BF16=30
enum GgmlType : int {
  GGML_TYPE_F32 = 0,
  GGML_TYPE_F16 = 1,
  GGML_TYPE_Q4_0 = 2,
  GGML_TYPE_Q4_1 = 3,
  GGML_TYPE_Q5_0 = 6,
  GGML_TYPE_Q5_1 = 7,
  GGML_TYPE_Q8_0 = 8,
  GGML_TYPE_Q4_K = 12,
  GGML_TYPE_Q5_K = 13,
  GGML_TYPE_Q6_K = 14,
  GGML_TYPE_BF16 = 30,
};

// True for the types dequantize() handles (the list above).
bool ggml_type_dequantizable(int type);
// Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for the K-quants); 0 when not dequantizable.
int64_t ggml_block_elems(int type);
// Bytes per block; 0 when not dequantizable.
int64_t ggml_block_bytes(int type);
// ggml's name of a type id ("Q4_K", ...), or nullptr for an id unknown here (any ggml type, not only the handled ones).
const char* ggml_type_name(int type);

// Dequantizes n elements (n a multiple of the block size) from src (n/block_elems*block_bytes bytes) into dst.
// Single-threaded; no alignment needed. Precondition: ggml_type_dequantizable(type) (otherwise does nothing).
void dequantize(int type, const uint8_t* src, float* dst, int64_t n);

}  // namespace gradmm
