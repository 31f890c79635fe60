#pragma once
// A read-only memory map of a whole file. Model weights are read in place from the map (zero-copy):
// loading a model costs page faults, not copies, and several processes share the page cache.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "util/result.h"

namespace tern {

class MappedFile {
 public:
  /// Maps `path` read-only. An empty file maps to an empty span.
  static Result<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  /// The file's bytes; valid as long as this object lives.
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/// Drops this process's pages of `bytes`, a range of a MappedFile (whole pages inside it only): for data
/// that was copied elsewhere (e.g. weights rearranged at load), so it stops counting in the RSS. The
/// bytes stay readable; touching them again reads them back from the page cache or the file.
void release_mapped_pages(std::span<const uint8_t> bytes);

}  // namespace tern
