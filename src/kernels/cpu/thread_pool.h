#pragma once
// A persistent pool of worker threads: ops split their work with parallel_for and never create
// threads. The calling thread works too, so a pool of N threads uses N-1 workers.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tern::kernels {

class ThreadPool {
 public:
  /// `num_threads` includes the caller; 0 means one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  /// Runs fn(thread_index, num_threads) on every thread (caller included) and waits for all.
  void run_on_all(const std::function<void(int, int)>& fn);

  /// Parallel regions (run_on_all calls that woke workers) started by every pool of this process:
  /// each is a fork and a join, so benchmarks report how many an op sequence costs.
  static uint64_t regions_started();

  /// Splits [0, n) into contiguous chunks (a few per thread, claimed dynamically) and runs fn(begin, end)
  /// on each; returns when all are done.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int, int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  std::atomic<int> num_pending_{0};
  bool stopping_ = false;
};

}  // namespace tern::kernels
