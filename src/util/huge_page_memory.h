#pragma once
// Anonymous memory for large arrays read at scattered places (the KV cache): one mapping, 2 MiB
// aligned and advised for transparent huge pages, so a random access costs a TLB entry per 2 MiB
// instead of per 4 KiB. Where the kernel gives no huge pages (THP off, or not Linux) it is ordinary
// memory. Not zero-filled by us; pages cost resident memory only once touched.

#include <cstddef>

namespace tern {

class HugePageMemory {
 public:
  HugePageMemory() = default;
  /// `bytes` of memory (0: none). Throws std::bad_alloc when the mapping fails.
  explicit HugePageMemory(size_t bytes);
  HugePageMemory(HugePageMemory&& other) noexcept;
  HugePageMemory& operator=(HugePageMemory&& other) noexcept;
  HugePageMemory(const HugePageMemory&) = delete;
  HugePageMemory& operator=(const HugePageMemory&) = delete;
  ~HugePageMemory();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();

  void* mapping_ = nullptr;  // what was mapped (data_ rounded down, plus the alignment slack)
  size_t mapping_size_ = 0;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tern
