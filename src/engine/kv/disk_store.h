#pragma once
// The KV cache's disk tier: full blocks of K/V kept in files under a directory, found by the prefix
// cache's chained hash, so a prefix evicted from RAM — or computed before a restart — is read back
// instead of recomputed.
//
//   DIR/<store id>/<hash, 16 hex>.kv     one file per block:
//     "TERNKV01" | hash u64 | parent hash u64 | block_size u32 | 0 u32 | payload bytes u64
//     | block_size token ids (i32) | SHA-256 of the payload (64 hex chars) | payload (K/V of every layer)
//
// The store id names the model file's identity and the KV layout, so another model (or another
// build's layout) never reads these files. Writes happen on the store's own thread (a bounded queue:
// when the disk falls behind, blocks are dropped, never waited for); each file is written to a
// temporary name and renamed, so a crash never leaves a half block under a real name. Reads verify
// everything (magic, hash, parent, tokens, size, checksum): a damaged file is deleted and reported as
// a miss, so it costs a recompute, never a wrong answer. The total size is capped (least recently
// used files go first); the index is rebuilt from the directory at start (oldest first by mtime).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "util/result.h"

namespace tern::engine {

struct DiskStoreStats {
  int64_t blocks = 0;          ///< files in the store now
  int64_t bytes = 0;           ///< their total size
  int64_t writes = 0;          ///< blocks written
  int64_t write_errors = 0;    ///< blocks a write failed for (disk full, permissions)
  int64_t dropped = 0;         ///< blocks not written: the write queue was full
  int64_t hits = 0;            ///< blocks read back intact
  int64_t misses = 0;          ///< lookups of a hash the store did not have
  int64_t corrupt = 0;         ///< files that failed verification (deleted, recomputed)
  int64_t evictions = 0;       ///< files removed to stay under the size cap
};

class DiskKvStore {
 public:
  /// Opens (creating) DIR/<store_id>/ and indexes the blocks already there. `payload_bytes` is the
  /// size of one block's K/V; files of another size are removed.
  static Result<std::unique_ptr<DiskKvStore>> open(const std::string& dir, const std::string& store_id, int64_t block_size,
                                                   int64_t payload_bytes, int64_t capacity_bytes);
  ~DiskKvStore();  ///< writes what is queued, then stops the writer
  DiskKvStore(const DiskKvStore&) = delete;
  DiskKvStore& operator=(const DiskKvStore&) = delete;

  /// Queues a block for writing (the payload is moved in); false when the queue is full (dropped).
  bool put(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens, std::vector<uint8_t> payload);
  /// Whether the store has (or is about to write) the block: an index lookup, no I/O.
  bool contains(uint64_t hash) const;
  /// Reads the block into `payload` (payload_bytes) if it is there and verifies as holding `tokens`
  /// after `parent`. A damaged file is deleted.
  bool get(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens, std::span<uint8_t> payload);
  /// Blocks until every queued write is on disk.
  void flush();

  DiskStoreStats stats() const;
  const std::filesystem::path& path() const { return path_; }
  int64_t file_bytes() const { return file_bytes_; }
  int64_t payload_bytes() const { return payload_bytes_; }

  /// A cheap identity of a model file: SHA-256 of its size and its first and last MiB (hex).
  static Result<std::string> file_fingerprint(const std::string& path);

 private:
  struct Pending {
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> payload;
  };
  struct Entry {
    std::list<uint64_t>::iterator lru;
  };

  DiskKvStore(std::filesystem::path path, int64_t block_size, int64_t payload_bytes, int64_t capacity_bytes);
  void scan();
  void writer_loop();
  bool write_file(const Pending& block);
  void add_to_index(uint64_t hash);          // under mutex_
  void remove_from_index(uint64_t hash);     // under mutex_
  std::filesystem::path file_of(uint64_t hash) const;

  std::filesystem::path path_;
  int64_t block_size_;
  int64_t payload_bytes_;
  int64_t file_bytes_;
  int64_t capacity_bytes_;
  int64_t max_pending_ = 64;

  mutable std::mutex mutex_;
  std::condition_variable wake_, drained_;
  std::deque<std::shared_ptr<Pending>> queue_;
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending_;  // queued or being written, by hash
  std::unordered_map<uint64_t, Entry> index_;                       // on disk
  std::list<uint64_t> lru_;                                          // least recently used first
  DiskStoreStats stats_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace tern::engine
