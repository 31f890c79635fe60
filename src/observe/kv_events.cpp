#include "observe/kv_events.h"

#include <fmt/format.h>
#include <openssl/sha.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

namespace tern::observe {
namespace {

constexpr size_t kMaxQueued = size_t{1} << 20;  // events waiting to be sent at most; more are dropped

uint64_t last_8_bytes_of_sha256(const std::vector<uint8_t>& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), digest);
  uint64_t out = 0;
  for (int i = 24; i < 32; ++i) out = (out << 8) | digest[i];
  return out;
}

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

}  // namespace

uint64_t kv_event_block_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // Canonical CBOR (shortest integer forms, as nlohmann writes them) of [parent, [tokens...], null].
  nlohmann::json token_list = nlohmann::json::array();
  for (int32_t token : tokens) token_list.push_back(static_cast<uint32_t>(token));
  return last_8_bytes_of_sha256(nlohmann::json::to_cbor(nlohmann::json::array({parent, std::move(token_list), nullptr})));
}

uint64_t kv_event_root_hash(std::string_view seed) { return last_8_bytes_of_sha256(nlohmann::json::to_cbor(std::string(seed))); }

Result<std::shared_ptr<KvEventPublisher>> KvEventPublisher::start(KvEventsOptions options) {
  if (options.endpoint.empty()) return fail("--kv-events-endpoint: empty");
  if (options.pod.empty()) {
    char host[256] = {};
    options.pod = ::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' ? host : "tern";
  }
  std::shared_ptr<KvEventPublisher> publisher(new KvEventPublisher(std::move(options)));
  publisher->context_ = zmq_ctx_new();
  // XPUB: a PUB that also hears subscriptions, so nothing is sent (and lost) before the indexer listens.
  publisher->socket_ = zmq_socket(publisher->context_, ZMQ_XPUB);
  const int linger_ms = 1000;  // at shutdown, a second to deliver what is queued
  zmq_setsockopt(publisher->socket_, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
  if (zmq_connect(publisher->socket_, publisher->options_.endpoint.c_str()) != 0) {
    return fail("--kv-events-endpoint {}: {}", publisher->options_.endpoint, zmq_strerror(zmq_errno()));
  }
  {
    std::lock_guard lock(publisher->mutex_);
    publisher->queue_.push_back({.kind = 2, .hash = 0, .has_parent = false, .parent = 0, .tokens = {}});
  }
  KvEventPublisher* self = publisher.get();
  publisher->thread_ = std::thread([self] { self->run(); });
  return publisher;
}

KvEventPublisher::KvEventPublisher(KvEventsOptions options) : options_(std::move(options)), root_(kv_event_root_hash(options_.hash_seed)) {}

KvEventPublisher::~KvEventPublisher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (socket_ != nullptr) zmq_close(socket_);
  if (context_ != nullptr) zmq_ctx_term(context_);
}

void KvEventPublisher::on_stored(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
  // The event hash chains from the parent block's event hash (the root for a first block).
  uint64_t parent_event = root_;
  bool has_parent = false;
  if (parent != 0) {
    auto it = event_hash_of_.find(parent);
    if (it == event_hash_of_.end()) return;  // its prefix is gone from the cache: nothing a router could match
    parent_event = it->second;
    has_parent = true;
  }
  const uint64_t event_hash = kv_event_block_hash(parent_event, tokens);
  event_hash_of_[hash] = event_hash;
  if (copies_[event_hash]++ > 0) return;  // another key (adapter, org) already holds this prefix
  std::lock_guard lock(mutex_);
  if (queue_.size() >= kMaxQueued) {
    ++stats_.dropped;
    return;
  }
  queue_.push_back({.kind = 0, .hash = event_hash, .has_parent = has_parent, .parent = parent_event, .tokens = {tokens.begin(), tokens.end()}});
}

void KvEventPublisher::on_removed(uint64_t hash) {
  auto it = event_hash_of_.find(hash);
  if (it == event_hash_of_.end()) return;
  const uint64_t event_hash = it->second;
  event_hash_of_.erase(it);
  auto copies = copies_.find(event_hash);
  if (copies == copies_.end() || --copies->second > 0) return;
  copies_.erase(copies);
  std::lock_guard lock(mutex_);
  if (queue_.size() >= kMaxQueued) {
    ++stats_.dropped;
    return;
  }
  queue_.push_back({.kind = 1, .hash = event_hash, .has_parent = false, .parent = 0, .tokens = {}});
}

KvEventsStats KvEventPublisher::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string KvEventPublisher::encode(const std::vector<Event>& batch) const {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pack(&buffer);
  pack.pack_array(2);
  pack.pack_double(unix_now());
  pack.pack_array(static_cast<uint32_t>(batch.size()));
  for (const Event& e : batch) {
    switch (e.kind) {
      case 0:
        pack.pack_array(6);
        pack.pack(std::string_view("BlockStored"));
        pack.pack_array(1);
        pack.pack_uint64(e.hash);
        if (e.has_parent) pack.pack_uint64(e.parent); else pack.pack_nil();
        pack.pack_array(static_cast<uint32_t>(e.tokens.size()));
        for (int32_t token : e.tokens) pack.pack_uint32(static_cast<uint32_t>(token));
        pack.pack_int64(options_.block_size);
        pack.pack_nil();  // LoRA id: adapters' blocks are published under the model's name
        break;
      case 1:
        pack.pack_array(2);
        pack.pack(std::string_view("BlockRemoved"));
        pack.pack_array(1);
        pack.pack_uint64(e.hash);
        break;
      default:
        pack.pack_array(1);
        pack.pack(std::string_view("AllBlocksCleared"));
        break;
    }
  }
  return std::string(buffer.data(), buffer.size());
}

void KvEventPublisher::run() {
  const std::string topic = fmt::format("kv@{}@{}", options_.pod, options_.model);
  bool subscribed = false;
  while (true) {
    // Subscriptions arrive as messages (1, prefix...): until the indexer's first, events wait (bounded).
    char note[256];
    while (zmq_recv(socket_, note, sizeof note, ZMQ_DONTWAIT) > 0) subscribed = subscribed || note[0] == 1;
    std::vector<Event> batch;
    bool stopping = false;
    {
      std::lock_guard lock(mutex_);
      if (subscribed) batch.swap(queue_);
      stopping = stopping_;
    }
    if (!batch.empty()) {
      const std::string payload = encode(batch);
      unsigned char sequence[8];
      for (int i = 0; i < 8; ++i) sequence[i] = static_cast<unsigned char>(sequence_ >> (56 - 8 * i));
      ++sequence_;
      // Non-blocking: with no indexer connected (or one not keeping up) ZeroMQ drops at its high-water mark.
      const bool sent = zmq_send(socket_, topic.data(), topic.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                        zmq_send(socket_, sequence, sizeof sequence, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                        zmq_send(socket_, payload.data(), payload.size(), ZMQ_DONTWAIT) >= 0;
      std::lock_guard lock(mutex_);
      ++stats_.batches;
      for (const Event& e : batch) {
        if (!sent) ++stats_.dropped;
        else if (e.kind == 0) ++stats_.stored;
        else if (e.kind == 1) ++stats_.removed;
      }
    }
    if (stopping) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace tern::observe
