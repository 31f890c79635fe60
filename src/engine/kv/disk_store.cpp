#include "engine/kv/disk_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/sha256.h"

namespace tern::engine {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'T', 'E', 'R', 'N', 'K', 'V', '0', '1'};
constexpr size_t kDigestChars = 64;

struct Header {
  char magic[8];
  uint64_t hash;
  uint64_t parent;
  uint32_t block_size;
  uint32_t reserved;
  uint64_t payload_bytes;
};
static_assert(sizeof(Header) == 40);

/// Reads exactly `size` bytes at `offset`; false on a short read or an error.
bool read_at(int fd, void* out, size_t size, off_t offset) {
  auto* p = static_cast<uint8_t*>(out);
  while (size > 0) {
    const ssize_t got = ::pread(fd, p, size, offset);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      return false;
    }
    p += got;
    size -= static_cast<size_t>(got);
    offset += got;
  }
  return true;
}

bool write_all(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t done = ::write(fd, p, size);
    if (done <= 0) {
      if (done < 0 && errno == EINTR) continue;
      return false;
    }
    p += done;
    size -= static_cast<size_t>(done);
  }
  return true;
}

}  // namespace

Result<std::string> DiskKvStore::file_fingerprint(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return fail("{}: {}", path, ec.message());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("{}: cannot open: {}", path, std::strerror(errno));
  constexpr uint64_t kSpan = 1 << 20;
  const uint64_t head = std::min<uint64_t>(size, kSpan);
  const uint64_t tail = std::min<uint64_t>(size - head, kSpan);
  std::vector<uint8_t> bytes(16 + head + tail);
  std::memcpy(bytes.data(), "tern-model-v1\0\0\0", 16);
  const bool ok = read_at(fd, bytes.data() + 16, head, 0) && read_at(fd, bytes.data() + 16 + head, tail, static_cast<off_t>(size - tail));
  ::close(fd);
  if (!ok) return fail("{}: read error", path);
  const std::string digest = sha256_hex(bytes);
  return fmt::format("{}-{}", size, digest.substr(0, 32));
}

DiskKvStore::DiskKvStore(fs::path path, int64_t block_size, int64_t payload_bytes, int64_t capacity_bytes)
    : path_(std::move(path)),
      block_size_(block_size),
      payload_bytes_(payload_bytes),
      file_bytes_(static_cast<int64_t>(sizeof(Header)) + block_size * 4 + static_cast<int64_t>(kDigestChars) + payload_bytes),
      capacity_bytes_(capacity_bytes) {
  // The queue holds at most ~64 MiB of blocks (and at least 4).
  max_pending_ = std::max<int64_t>(4, (int64_t{64} << 20) / std::max<int64_t>(1, payload_bytes));
}

Result<std::unique_ptr<DiskKvStore>> DiskKvStore::open(const std::string& dir, const std::string& store_id, int64_t block_size,
                                                       int64_t payload_bytes, int64_t capacity_bytes) {
  if (capacity_bytes <= 0) return fail("--kv-disk-bytes must be positive");
  const fs::path path = fs::path(dir) / store_id;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail("{}: cannot create the KV disk cache: {}", path.string(), ec.message());
  if (::access(path.c_str(), W_OK) != 0) return fail("{}: not writable: {}", path.string(), std::strerror(errno));
  std::unique_ptr<DiskKvStore> store(new DiskKvStore(path, block_size, payload_bytes, capacity_bytes));
  if (store->file_bytes_ > capacity_bytes) {
    return fail("--kv-disk-bytes {} is smaller than one block ({} bytes)", capacity_bytes, store->file_bytes_);
  }
  store->scan();
  store->writer_ = std::thread([s = store.get()] { s->writer_loop(); });
  return store;
}

DiskKvStore::~DiskKvStore() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

fs::path DiskKvStore::file_of(uint64_t hash) const { return path_ / fmt::format("{:016x}.kv", hash); }

void DiskKvStore::scan() {
  struct Found {
    fs::file_time_type mtime;
    uint64_t hash;
  };
  std::vector<Found> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code size_ec;
    const bool is_block = name.size() == 19 && name.ends_with(".kv") && entry.is_regular_file(size_ec) &&
                          static_cast<int64_t>(entry.file_size(size_ec)) == file_bytes_ && !size_ec;
    uint64_t hash = 0;
    if (is_block && std::from_chars(name.data(), name.data() + 16, hash, 16).ptr == name.data() + 16) {
      found.push_back({entry.last_write_time(size_ec), hash});
    } else {
      fs::remove(entry.path(), size_ec);  // a temporary left by a crash, or a block of another size
    }
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  std::lock_guard lock(mutex_);
  for (const Found& f : found) add_to_index(f.hash);
  // A smaller cap than last time: the oldest go.
  while (stats_.bytes > capacity_bytes_ && !lru_.empty()) {
    const uint64_t oldest = lru_.front();
    remove_from_index(oldest);
    fs::remove(file_of(oldest), ec);
    ++stats_.evictions;
  }
}

void DiskKvStore::add_to_index(uint64_t hash) {
  if (index_.contains(hash)) return;
  lru_.push_back(hash);
  index_.emplace(hash, Entry{std::prev(lru_.end())});
  ++stats_.blocks;
  stats_.bytes += file_bytes_;
}

void DiskKvStore::remove_from_index(uint64_t hash) {
  auto it = index_.find(hash);
  if (it == index_.end()) return;
  lru_.erase(it->second.lru);
  index_.erase(it);
  --stats_.blocks;
  stats_.bytes -= file_bytes_;
}

bool DiskKvStore::put(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens, std::vector<uint8_t> payload) {
  {
    std::lock_guard lock(mutex_);
    if (index_.contains(hash) || pending_.contains(hash)) return true;
    if (static_cast<int64_t>(queue_.size()) >= max_pending_) {
      ++stats_.dropped;
      return false;
    }
    auto block = std::make_shared<Pending>(Pending{hash, parent, {tokens.begin(), tokens.end()}, std::move(payload)});
    queue_.push_back(block);
    pending_.emplace(hash, std::move(block));
  }
  wake_.notify_one();
  return true;
}

bool DiskKvStore::contains(uint64_t hash) const {
  std::lock_guard lock(mutex_);
  return index_.contains(hash) || pending_.contains(hash);
}

bool DiskKvStore::get(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens, std::span<uint8_t> payload) {
  if (static_cast<int64_t>(payload.size()) != payload_bytes_) return false;
  {
    std::unique_lock lock(mutex_);
    if (auto p = pending_.find(hash); p != pending_.end()) {  // not written yet: straight from memory
      const Pending& block = *p->second;
      if (block.parent != parent || !std::equal(tokens.begin(), tokens.end(), block.tokens.begin(), block.tokens.end())) return false;
      std::memcpy(payload.data(), block.payload.data(), payload.size());
      ++stats_.hits;
      return true;
    }
    auto it = index_.find(hash);
    if (it == index_.end()) {
      ++stats_.misses;
      return false;
    }
    lru_.splice(lru_.end(), lru_, it->second.lru);  // most recently used
  }
  // The read itself runs without the lock (the writer may add other files meanwhile).
  const fs::path file = file_of(hash);
  bool intact = false;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    Header header{};
    std::vector<int32_t> stored(static_cast<size_t>(block_size_));
    char digest[kDigestChars];
    const off_t tokens_at = sizeof(Header);
    const off_t digest_at = tokens_at + static_cast<off_t>(block_size_ * 4);
    const off_t payload_at = digest_at + static_cast<off_t>(kDigestChars);
    intact = read_at(fd, &header, sizeof header, 0) && std::memcmp(header.magic, kMagic, sizeof kMagic) == 0 && header.hash == hash &&
             header.parent == parent && header.block_size == static_cast<uint32_t>(block_size_) &&
             header.payload_bytes == static_cast<uint64_t>(payload_bytes_) && read_at(fd, stored.data(), stored.size() * 4, tokens_at) &&
             std::equal(tokens.begin(), tokens.end(), stored.begin(), stored.end()) && read_at(fd, digest, sizeof digest, digest_at) &&
             read_at(fd, payload.data(), payload.size(), payload_at) &&
             sha256_hex(payload) == std::string_view(digest, sizeof digest);
    ::close(fd);
  }
  std::lock_guard lock(mutex_);
  if (intact) {
    ++stats_.hits;
    return true;
  }
  // Damaged, truncated, or another prefix with a colliding hash: never served; a real problem is removed.
  ++stats_.corrupt;
  remove_from_index(hash);
  std::error_code ec;
  fs::remove(file, ec);
  return false;
}

bool DiskKvStore::write_file(const Pending& block) {
  const fs::path final_path = file_of(block.hash);
  const fs::path temp = final_path.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  Header header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.hash = block.hash;
  header.parent = block.parent;
  header.block_size = static_cast<uint32_t>(block_size_);
  header.payload_bytes = static_cast<uint64_t>(block.payload.size());
  const std::string digest = sha256_hex(block.payload);
  const bool ok = write_all(fd, &header, sizeof header) && write_all(fd, block.tokens.data(), block.tokens.size() * 4) &&
                  write_all(fd, digest.data(), digest.size()) && write_all(fd, block.payload.data(), block.payload.size());
  const bool closed = ::close(fd) == 0;
  std::error_code ec;
  if (!ok || !closed) {
    fs::remove(temp, ec);
    return false;
  }
  fs::rename(temp, final_path, ec);
  if (ec) fs::remove(temp, ec);
  return !ec;
}

void DiskKvStore::writer_loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, and everything is written
    std::shared_ptr<Pending> block = queue_.front();
    queue_.pop_front();
    // Make room first (least recently used files), so the cap holds at every moment.
    while (stats_.bytes + file_bytes_ > capacity_bytes_ && !lru_.empty()) {
      const uint64_t oldest = lru_.front();
      remove_from_index(oldest);
      ++stats_.evictions;
      lock.unlock();
      std::error_code ec;
      fs::remove(file_of(oldest), ec);
      lock.lock();
    }
    lock.unlock();
    const bool written = write_file(*block);
    lock.lock();
    pending_.erase(block->hash);
    if (written) {
      add_to_index(block->hash);
      ++stats_.writes;
    } else {
      ++stats_.write_errors;
    }
    if (queue_.empty()) drained_.notify_all();
  }
  drained_.notify_all();
}

void DiskKvStore::flush() {
  std::unique_lock lock(mutex_);
  drained_.wait(lock, [&] { return pending_.empty(); });
}

DiskStoreStats DiskKvStore::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace tern::engine
