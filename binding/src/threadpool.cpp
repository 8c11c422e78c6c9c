#include "threadpool.h"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace gradmm {
namespace {

// True on pool workers, and on the caller while it runs its own share: nested loops then run serially.
thread_local bool t_in_pool = false;

class ThreadPool {
 public:
  ~ThreadPool() { resize(1); }

  int size() const { return num_threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = true;
      ++generation_;
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stopping_ = false;
    job_parts_ = 0;
    num_threads_ = n < 1 ? 1 : n;
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i, g = generation_] { worker_loop(i, g); });
  }

  void run(long n, const std::function<void(int, long, long)>& fn) {
    if (n <= 0) return;
    int parts = (int)std::min<long>(num_threads_, n);
    if (parts <= 1 || t_in_pool) {
      fn(0, 0, n);
      return;
    }
    // One parallel loop at a time: concurrent callers (e.g. two Node worker threads) queue here.
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      job_ = &fn;
      job_n_ = n;
      job_parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    cv_start_.notify_all();
    t_in_pool = true;
    run_part(0);
    t_in_pool = false;
    std::unique_lock<std::mutex> lk(mutex_);
    cv_done_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void run_part(int part) {
    long begin = job_n_ * part / job_parts_;
    long end = job_n_ * (part + 1) / job_parts_;
    if (begin < end) (*job_)(part, begin, end);
  }

  void worker_loop(int index, unsigned long seen) {
    t_in_pool = true;
    for (;;) {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_start_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (stopping_) return;
      if (index >= job_parts_) continue;
      lk.unlock();
      run_part(index);
      lk.lock();
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int, long, long)>* job_ = nullptr;
  long job_n_ = 0;
  int job_parts_ = 0;
  int pending_ = 0;
  unsigned long generation_ = 0;
  bool stopping_ = false;
};

ThreadPool& pool() {
  static ThreadPool* p = [] {
    auto* tp = new ThreadPool();  // intentionally leaked: workers must outlive static destructors of callers
    unsigned hw = std::thread::hardware_concurrency();
    tp->resize(hw ? (int)hw : 1);
    return tp;
  }();
  return *p;
}

}  // namespace

void set_num_threads(int n) {
  if (n <= 0) {
    unsigned hw = std::thread::hardware_concurrency();
    n = hw ? (int)hw : 1;
  }
  if (n != pool().size()) pool().resize(n);
}

int get_num_threads() { return pool().size(); }

void parallel_for_indexed(long n, const std::function<void(int, long, long)>& fn) { pool().run(n, fn); }

void parallel_for(long n, const std::function<void(long, long)>& fn) {
  pool().run(n, [&](int, long b, long e) { fn(b, e); });
}

}  // namespace gradmm
