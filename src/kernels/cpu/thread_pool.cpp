#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace tern::kernels {
namespace {
std::atomic<uint64_t> g_regions_started{0};
}  // namespace

uint64_t ThreadPool::regions_started() { return g_regions_started.load(std::memory_order_relaxed); }

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int, int)>* job = nullptr;
    {
      // Spin briefly before sleeping: ops come back to back, and a futex wake costs microseconds.
      for (int spin = 0; spin < 20000; ++spin) {
        if (__atomic_load_n(&generation_, __ATOMIC_ACQUIRE) != seen) break;
        if (spin < 4000) __builtin_ia32_pause();
        else std::this_thread::yield();
      }
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(index, num_threads());
    num_pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  if (workers_.empty()) {
    fn(0, 1);
    return;
  }
  g_regions_started.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    job_ = &fn;
    num_pending_.store(static_cast<int>(workers_.size()), std::memory_order_release);
    __atomic_store_n(&generation_, generation_ + 1, __ATOMIC_RELEASE);
  }
  wake_.notify_all();
  fn(0, num_threads());
  // Spin while the others finish (they usually do within microseconds); if they do not, a worker is
  // probably descheduled on a busy machine, so give up the core instead of burning it.
  for (int spin = 0; num_pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < 4000) __builtin_ia32_pause();
    else std::this_thread::yield();
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int count = num_threads();
  if (count == 1 || n == 1) {
    fn(0, n);
    return;
  }
  // A few contiguous chunks per thread, claimed from a counter: on a busy machine a descheduled thread
  // holds up only the chunk it is in, and the others take the rest (with one fixed chunk per thread,
  // every op would wait for it).
  const int64_t num_chunks = std::min<int64_t>(n, 4 * static_cast<int64_t>(count));
  std::atomic<int64_t> next{0};
  run_on_all([&](int, int) {
    for (int64_t chunk = next.fetch_add(1, std::memory_order_relaxed); chunk < num_chunks;
         chunk = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(n * chunk / num_chunks, n * (chunk + 1) / num_chunks);
    }
  });
}

}  // namespace tern::kernels
