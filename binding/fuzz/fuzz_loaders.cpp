// Fuzz target over the native loaders' entry points: GGUF block dequantization (every ggml type id, handled or not,
// the AVX2+F16C and scalar paths) and the F16/BF16 to float32 conversions that safetensors and GGUF tensors stream
// through (types F16 and BF16 of the same dequantize()).
//
// Input layout: byte 0 picks a type id (from the handled list, or a raw id), the rest is block data; a trailing
// partial block is dropped as the loader does (it checks sizes before calling dequantize).
//
// Two builds of the same file:
//   clang++ -fsanitize=fuzzer,address,undefined ...        libFuzzer (LLVMFuzzerTestOneInput)
//   g++ -DGRADMM_FUZZ_DRIVER -fsanitize=address,undefined  a plain driver: runs every file of a corpus folder, then
//                                                           seeded random mutations of them for a time budget:
//        fuzz_loaders CORPUS_DIR [SECONDS] [SEED]   (prints "inputs: N")
// test/native_fuzz.test.ts builds and runs whichever the machine's compilers allow.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../src/gguf_quants.h"

using namespace gradmm;

static const int kTypes[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                             GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_BF16};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t sel = data[0];
  const int type = sel < 0xC0 ? kTypes[sel % (sizeof(kTypes) / sizeof(kTypes[0]))] : (sel - 0xC0);  // raw ids 0..63 too
  const uint8_t* src = data + 1;
  const size_t bytes = size - 1;
  (void)ggml_type_name(type);
  if (!ggml_type_dequantizable(type)) {
    if (ggml_block_elems(type) != 0 || ggml_block_bytes(type) != 0) __builtin_trap();  // unhandled types report 0
    return 0;
  }
  const int64_t be = ggml_block_elems(type), bb = ggml_block_bytes(type);
  if (be <= 0 || bb <= 0) __builtin_trap();
  const int64_t blocks = (int64_t)bytes / bb;
  if (blocks == 0) return 0;
  // an exact-size heap copy, so that ASan sees any read past the last block
  std::vector<uint8_t> in(src, src + blocks * bb);
  std::vector<float> out((size_t)(blocks * be));
  dequantize(type, in.data(), out.data(), blocks * be);
  // F32 round-trips bit for bit
  if (type == GGML_TYPE_F32 && std::memcmp(out.data(), in.data(), in.size()) != 0) __builtin_trap();
  return 0;
}

#ifdef GRADMM_FUZZ_DRIVER
#include <chrono>
#include <dirent.h>
#include <cstdlib>
#include <string>

static uint64_t rng_state;
static uint64_t next_rand() {  // splitmix64
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> v;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return v;
  uint8_t buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
  std::fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [SECONDS] [SEED]\n", argv[0]);
    return 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0;
  rng_state = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
  std::vector<std::vector<uint8_t>> corpus;
  if (DIR* d = opendir(argv[1])) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') corpus.push_back(read_file(std::string(argv[1]) + "/" + e->d_name));
    closedir(d);
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "empty corpus %s\n", argv[1]);
    return 2;
  }
  long inputs = 0;
  for (auto& c : corpus) LLVMFuzzerTestOneInput(c.data(), c.size()), ++inputs;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint8_t> x;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    for (int rep = 0; rep < 64; ++rep) {
      x = corpus[next_rand() % corpus.size()];
      const int edits = 1 + (int)(next_rand() % 8);
      for (int e = 0; e < edits; ++e) {
        const uint64_t r = next_rand();
        switch (r % 6) {
          case 0: if (!x.empty()) x[(r >> 8) % x.size()] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;       // bit flip
          case 1: if (!x.empty()) x[(r >> 8) % x.size()] = (uint8_t)(r >> 40); break;                     // random byte
          case 2: if (!x.empty()) x.resize((r >> 8) % (x.size() + 1)); break;                             // truncate
          case 3: x.insert(x.begin() + (x.empty() ? 0 : (r >> 8) % x.size()), (size_t)((r >> 32) % 64), (uint8_t)(r >> 48)); break;
          case 4: if (!x.empty()) x[0] = (uint8_t)(r >> 8); break;                                        // another type
          case 5: { const uint8_t v[] = {0x00, 0xFF, 0x7C, 0x7F, 0x80}; if (x.size() > 2) { size_t at = (r >> 8) % (x.size() - 1); x[at] = v[(r >> 40) % 5]; x[at + 1] = v[(r >> 44) % 5]; } break; }  // inf/nan halves
        }
      }
      LLVMFuzzerTestOneInput(x.data(), x.size());
      ++inputs;
    }
  }
  std::printf("inputs: %ld\n", inputs);
  return 0;
}
#endif
