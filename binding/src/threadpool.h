// A fixed pool of worker threads running one parallel loop at a time.
// Work is split into contiguous static chunks, so which thread computes which element never depends on timing:
// results are bit-identical across runs. Callers keep per-element arithmetic independent of the chunking, so they
// are also identical across thread counts.
#pragma once
#include <functional>

namespace gradmm {

// Sets the number of threads used by every parallel op (1 = run on the calling thread). 0 = all cores.
void set_num_threads(int n);
int get_num_threads();

// Calls fn(begin, end) on disjoint contiguous ranges covering [0, n), one range per thread (at most n ranges).
// Nested calls from inside fn run serially on the calling thread.
void parallel_for(long n, const std::function<void(long begin, long end)>& fn);

// Like parallel_for but hands each thread its index as well: fn(thread_index, begin, end).
void parallel_for_indexed(long n, const std::function<void(int thread, long begin, long end)>& fn);

}  // namespace gradmm
