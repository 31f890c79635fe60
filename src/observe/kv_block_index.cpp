#include "observe/kv_block_index.h"

#include <fmt/format.h>
#include <zmq.h>

#include <mutex>
#include <msgpack.hpp>

#include "observe/kv_events.h"

namespace tern::observe {
namespace {

constexpr int64_t kMaxMessageBytes = int64_t{64} << 20;

/// A block hash as vLLM versions send it: an integer, or bytes whose last 8 are taken big-endian
/// (what llm-d's indexer does with the SHA-256 digests newer vLLMs publish).
std::optional<uint64_t> hash_of(const msgpack::object& o) {
  if (o.type == msgpack::type::POSITIVE_INTEGER) return o.via.u64;
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return static_cast<uint64_t>(o.via.i64);
  if (o.type == msgpack::type::BIN && o.via.bin.size >= 8) {
    uint64_t out = 0;
    for (uint32_t i = o.via.bin.size - 8; i < o.via.bin.size; ++i) out = (out << 8) | static_cast<uint8_t>(o.via.bin.ptr[i]);
    return out;
  }
  return std::nullopt;
}

std::string_view string_of(const msgpack::object& o) {
  return o.type == msgpack::type::STR ? std::string_view(o.via.str.ptr, o.via.str.size) : std::string_view();
}

}  // namespace

std::vector<uint64_t> kv_event_block_chain(std::span<const int32_t> tokens, int64_t block_size, uint64_t root) {
  std::vector<uint64_t> out;
  if (block_size <= 0) return out;
  const size_t size = static_cast<size_t>(block_size);
  uint64_t parent = root;
  for (size_t start = 0; start + size <= tokens.size(); start += size) {
    parent = kv_event_block_hash(parent, tokens.subspan(start, size));
    out.push_back(parent);
  }
  return out;
}

std::string kv_index_metrics_text(const KvBlockIndexStats& s) {
  return fmt::format(
      "# HELP tern:kv_index_messages_total KV-event messages received from replicas.\n# TYPE tern:kv_index_messages_total counter\n"
      "tern:kv_index_messages_total {}\n"
      "# HELP tern:kv_index_events_total KV events applied, by kind.\n# TYPE tern:kv_index_events_total counter\n"
      "tern:kv_index_events_total{{kind=\"stored\"}} {}\ntern:kv_index_events_total{{kind=\"removed\"}} {}\n"
      "tern:kv_index_events_total{{kind=\"cleared\"}} {}\n"
      "# HELP tern:kv_index_sequence_gaps_total Messages a replica sent that never arrived.\n"
      "# TYPE tern:kv_index_sequence_gaps_total counter\ntern:kv_index_sequence_gaps_total {}\n"
      "# HELP tern:kv_index_bad_messages_total Messages dropped or partly skipped as malformed.\n"
      "# TYPE tern:kv_index_bad_messages_total counter\ntern:kv_index_bad_messages_total {}\n"
      "# HELP tern:kv_index_sources Replica/model pairs heard from.\n# TYPE tern:kv_index_sources gauge\ntern:kv_index_sources {}\n"
      "# HELP tern:kv_index_blocks KV blocks the replicas hold, by the index.\n# TYPE tern:kv_index_blocks gauge\ntern:kv_index_blocks {}\n",
      s.messages, s.stored, s.removed, s.cleared, s.sequence_gaps, s.bad_messages, s.sources, s.blocks);
}

KvBlockIndex::KvBlockIndex() = default;

Result<std::unique_ptr<KvBlockIndex>> KvBlockIndex::listen(const std::string& endpoint) {
  if (endpoint.empty()) return fail("kv_events.listen: empty");
  std::unique_ptr<KvBlockIndex> index(new KvBlockIndex());
  index->context_ = zmq_ctx_new();
  index->socket_ = zmq_socket(index->context_, ZMQ_SUB);
  const int64_t max_bytes = kMaxMessageBytes;
  zmq_setsockopt(index->socket_, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes);
  const int linger_ms = 0;
  zmq_setsockopt(index->socket_, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
  zmq_setsockopt(index->socket_, ZMQ_SUBSCRIBE, "kv@", 3);
  if (zmq_bind(index->socket_, endpoint.c_str()) != 0) {
    return fail("kv_events.listen {}: {}", endpoint, zmq_strerror(zmq_errno()));
  }
  char bound[256] = {};
  size_t bound_size = sizeof bound;
  zmq_getsockopt(index->socket_, ZMQ_LAST_ENDPOINT, bound, &bound_size);
  index->endpoint_ = bound;
  KvBlockIndex* self = index.get();
  index->thread_ = std::thread([self] { self->run(); });
  return index;
}

KvBlockIndex::~KvBlockIndex() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (socket_ != nullptr) zmq_close(socket_);
  if (context_ != nullptr) zmq_ctx_term(context_);
}

void KvBlockIndex::run() {
  while (!stopping_) {
    zmq_pollitem_t item{.socket = socket_, .fd = 0, .events = ZMQ_POLLIN, .revents = 0};
    if (zmq_poll(&item, 1, 100) <= 0) continue;
    // A message: its parts (topic, sequence, payload; anything else is counted as bad).
    std::vector<std::string> parts;
    while (true) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, socket_, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        break;
      }
      // At most four parts kept (a fourth already makes the message bad): many parts cost no memory here.
      if (parts.size() < 4) parts.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
      const bool more = zmq_msg_more(&part) != 0;
      zmq_msg_close(&part);
      if (!more) break;
    }
    if (parts.empty()) continue;
    if (parts.size() != 3) {
      std::unique_lock lock(mutex_);
      ++stats_.bad_messages;
      continue;
    }
    (void)apply(parts[0], parts[1], parts[2]);  // a bad one is counted
  }
}

Result<void> KvBlockIndex::apply(std::string_view topic, std::string_view sequence, std::string_view payload) {
  auto bad = [&](std::string why) -> Result<void> {
    std::unique_lock lock(mutex_);
    ++stats_.bad_messages;
    return fail("KV event message dropped: {}", why);
  };
  // "kv@POD@MODEL": the source is what follows "kv@".
  if (!topic.starts_with("kv@") || topic.size() == 3 || topic.size() > 1024) return bad("the topic is not kv@POD@MODEL");
  const std::string_view source = topic.substr(3);
  if (sequence.size() != 8) return bad("the sequence number is not 8 bytes");
  uint64_t seq = 0;
  for (char c : sequence) seq = (seq << 8) | static_cast<uint8_t>(c);
  msgpack::object_handle handle;
  try {
    // Bounds on what the decoder allocates: arrays, strings and nesting no real batch exceeds.
    const msgpack::unpack_limit limit(/*array=*/size_t{1} << 20, /*map=*/64, /*str=*/4096, /*bin=*/4096, /*ext=*/64, /*depth=*/8);
    handle = msgpack::unpack(payload.data(), payload.size(), nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    return bad(fmt::format("the payload is not msgpack ({})", e.what()));
  }
  const msgpack::object& batch = handle.get();
  // [timestamp, [event, ...], (data-parallel rank)]
  if (batch.type != msgpack::type::ARRAY || batch.via.array.size < 2 || batch.via.array.ptr[1].type != msgpack::type::ARRAY) {
    return bad("the payload is not [timestamp, [events]]");
  }
  const msgpack::object_array& events = batch.via.array.ptr[1].via.array;
  std::unique_lock lock(mutex_);
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= kMaxSources) {
      ++stats_.bad_messages;
      return fail("KV event message from {}: already {} sources (replica/model pairs); a new one is not indexed", source, kMaxSources);
    }
    it = sources_.emplace(std::string(source), Source{}).first;
    ++stats_.sources;
  }
  Source& s = it->second;
  if (s.has_sequence && seq != s.next_sequence && seq != 0) ++stats_.sequence_gaps;  // 0: the replica restarted
  s.has_sequence = true;
  s.next_sequence = seq + 1;
  ++stats_.messages;
  int64_t malformed = 0;
  for (uint32_t e = 0; e < events.size; ++e) {
    const msgpack::object& event = events.ptr[e];
    if (event.type != msgpack::type::ARRAY || event.via.array.size < 1) {
      ++malformed;
      continue;
    }
    const msgpack::object* field = event.via.array.ptr;
    const uint32_t fields = event.via.array.size;
    const std::string_view tag = string_of(field[0]);
    if (tag == "AllBlocksCleared") {
      stats_.blocks -= static_cast<int64_t>(s.blocks.size());
      s.blocks.clear();
      ++stats_.cleared;
    } else if ((tag == "BlockStored" && fields >= 5) || (tag == "BlockRemoved" && fields >= 2)) {
      if (field[1].type != msgpack::type::ARRAY) {
        ++malformed;
        continue;
      }
      const bool stored = tag == "BlockStored";
      if (stored && field[4].type == msgpack::type::POSITIVE_INTEGER && field[4].via.u64 > 0 && field[4].via.u64 < (1u << 20)) {
        s.block_size = static_cast<int64_t>(field[4].via.u64);
      }
      const msgpack::object_array& hashes = field[1].via.array;
      for (uint32_t h = 0; h < hashes.size; ++h) {
        const auto hash = hash_of(hashes.ptr[h]);
        if (!hash) {
          ++malformed;
          continue;
        }
        if (stored) {
          if (s.blocks.size() >= kMaxBlocksPerSource) continue;
          if (s.blocks.insert(*hash).second) {
            ++stats_.blocks;
            ++stats_.stored;
          }
        } else if (s.blocks.erase(*hash) > 0) {
          --stats_.blocks;
          ++stats_.removed;
        }
      }
    } else {
      ++malformed;  // an event this index does not know (or too few fields): skipped, the rest applied
    }
  }
  if (malformed > 0) {
    ++stats_.bad_messages;
    return fail("KV event message from {}: {} malformed or unknown events skipped", source, malformed);
  }
  return {};
}

int64_t KvBlockIndex::matched_blocks(const std::string& source, std::span<const uint64_t> chain) const {
  std::shared_lock lock(mutex_);
  auto it = sources_.find(source);
  if (it == sources_.end()) return 0;
  int64_t matched = 0;
  for (uint64_t hash : chain) {
    if (!it->second.blocks.contains(hash)) break;
    ++matched;
  }
  return matched;
}

int64_t KvBlockIndex::block_size(const std::string& source) const {
  std::shared_lock lock(mutex_);
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.block_size;
}

KvBlockIndexStats KvBlockIndex::stats() const {
  std::shared_lock lock(mutex_);
  return stats_;
}

}  // namespace tern::observe
