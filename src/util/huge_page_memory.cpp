#include "util/huge_page_memory.h"

#include <cstdint>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tern {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

HugePageMemory::HugePageMemory(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
#if defined(__linux__)
  // Map the slack for a 2 MiB-aligned start; the kernel backs aligned 2 MiB ranges of a region advised
  // MADV_HUGEPAGE with huge pages when it has them.
  mapping_size_ = bytes + kHugePage;
  mapping_ = ::mmap(nullptr, mapping_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw std::bad_alloc();
  }
  const auto start = (reinterpret_cast<uintptr_t>(mapping_) + kHugePage - 1) & ~(kHugePage - 1);
  data_ = reinterpret_cast<void*>(start);
  ::madvise(data_, bytes, MADV_HUGEPAGE);  // advisory: without THP the pages stay 4 KiB
#else
  mapping_ = ::operator new(bytes, std::align_val_t{kHugePage});
  data_ = mapping_;
#endif
}

HugePageMemory::HugePageMemory(HugePageMemory&& other) noexcept
    : mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

HugePageMemory& HugePageMemory::operator=(HugePageMemory&& other) noexcept {
  if (this != &other) {
    release();
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

HugePageMemory::~HugePageMemory() { release(); }

void HugePageMemory::release() {
  if (mapping_ == nullptr) return;
#if defined(__linux__)
  ::munmap(mapping_, mapping_size_);
#else
  ::operator delete(mapping_, std::align_val_t{kHugePage});
#endif
  mapping_ = nullptr;
}

}  // namespace tern
