#include "fixture_server.h"

#include <functional>
#include <unordered_set>
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tern::bench::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::string current;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

std::string http_chunk(std::string_view payload) { return fmt::format("{:x}\r\n{}\r\n", payload.size(), payload); }

std::string sse(const json& data) { return http_chunk("data: " + data.dump() + "\n\n"); }

}  // namespace

struct FixtureServer::Impl {
  explicit Impl(const FixtureConfig& config) : config(config), acceptor(io) {}

  const FixtureConfig& config;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  mutable std::mutex log_mutex;
  std::vector<FixtureRequestLog> log;
  std::unordered_set<size_t> cached_blocks;  // hash of each block-aligned prompt prefix seen

  /// Words of the prompt that a prefix cache would hold, and records this prompt's blocks.
  int cached_prefix_words(const std::vector<std::string>& words) {
    const size_t block = static_cast<size_t>(config.cache_block_words);
    size_t hash = 0;
    int cached = 0;
    bool is_still_hitting = true;
    for (size_t end = block; end <= words.size(); end += block) {
      for (size_t i = end - block; i < end; ++i) hash = hash * 1000003u ^ std::hash<std::string>{}(words[i]);
      const bool was_seen = !cached_blocks.insert(hash).second;
      if (is_still_hitting && was_seen) {
        cached += static_cast<int>(block);
      } else {
        is_still_hitting = false;
      }
    }
    return cached;
  }
};

namespace {

/// One client connection: reads requests one after the other (keep-alive) and streams each answer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, FixtureServer::Impl& server)
      : socket_(std::move(socket)), server_(server), timer_(server.io) {}

  void read_request() {
    request_ = {};
    http::async_read(socket_, buffer_, request_, [self = shared_from_this()](beast::error_code error, size_t) {
      if (error) return;  // closed by the client, or a bad request: drop the connection
      self->handle_request();
    });
  }

 private:
  void handle_request() {
    arrival_ = Clock::now();
    const std::string target(request_.target());
    if (request_.method() == http::verb::get) {
      json body = target.ends_with("/models") ? json{{"object", "list"}, {"data", {{{"id", "fixture"}, {"object", "model"}, {"owned_by", "tern"}}}}}
                                              : json{{"status", "ok"}};
      return write_simple(200, body.dump());
    }
    const bool is_chat = target.ends_with("/chat/completions");
    if (!is_chat && !target.ends_with("/completions")) return write_simple(404, R"({"error":{"message":"not found"}})");
    json body = json::parse(request_.body(), nullptr, false);
    if (body.is_discarded()) return write_simple(400, R"({"error":{"message":"bad json"}})");
    model_ = body.value("model", "fixture");
    if (model_ == "fail-500") return write_simple(500, R"({"error":{"message":"injected failure"}})");
    std::string prompt_text, last_input;
    if (is_chat) {
      for (const json& message : body.value("messages", json::array())) {
        if (!message.contains("content")) continue;
        const json& content = message["content"];
        if (content.is_string()) {
          last_input = content.get<std::string>();
        } else if (content.is_array()) {  // [{"type": "text", "text": ...}], as some clients (guidellm) send
          last_input.clear();
          for (const json& part : content) {
            if (part.is_object() && part.value("type", "") == "text") last_input += part.value("text", "") + " ";
          }
        } else {
          continue;
        }
        prompt_text += last_input + " ";
      }
    } else if (body.contains("prompt") && body["prompt"].is_string()) {
      prompt_text = last_input = body["prompt"].get<std::string>();
    }
    const std::vector<std::string> words = split_words(prompt_text);
    entry_ = {};
    entry_.arrival_ns = now_ns();
    entry_.model = model_;
    entry_.last_input = std::move(last_input);
    entry_.body = request_.body();
    entry_.num_prompt_tokens = static_cast<int>(words.size());
    entry_.num_cached_tokens = server_.cached_prefix_words(words);
    const json max_tokens = body.value("max_tokens", json(body.value("max_completion_tokens", json())));
    num_tokens_ = max_tokens.is_number_integer() ? max_tokens.get<int>() : server_.config.default_output_tokens;
    num_tokens_ = std::max(1, num_tokens_);
    entry_.num_output_tokens = num_tokens_;
    is_chat_ = is_chat;
    const bool is_streaming = body.value("stream", false);
    keep_alive_ = request_.keep_alive();
    if (!is_streaming) return write_non_streaming();
    tokens_sent_ = 0;
    chunk_index_ = 0;
    pending_ = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
               "Transfer-Encoding: chunked\r\n";
    pending_ += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    write_pending([](Session& self) { self.schedule_next_chunk(); });
  }

  Clock::time_point chunk_due(int index) const {
    const double ms = server_.config.ttft_ms + index * server_.config.itl_ms;
    return arrival_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
  }

  void schedule_next_chunk() {
    timer_.expires_at(chunk_due(chunk_index_));
    timer_.async_wait([self = shared_from_this()](beast::error_code error) {
      if (error) return;
      self->send_chunk();
    });
  }

  json chunk_json(const std::string& text) const {
    json choice = is_chat_ ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                           : json{{"index", 0}, {"text", text}, {"finish_reason", nullptr}};
    return {{"id", "fixture"}, {"object", is_chat_ ? "chat.completion.chunk" : "text_completion"},
            {"created", 0}, {"model", model_}, {"choices", json::array({choice})}};
  }

  json usage_json() const {
    return {{"prompt_tokens", entry_.num_prompt_tokens},
            {"completion_tokens", entry_.num_output_tokens},
            {"total_tokens", entry_.num_prompt_tokens + entry_.num_output_tokens},
            {"prompt_tokens_details", {{"cached_tokens", entry_.num_cached_tokens}}}};
  }

  void send_chunk() {
    const int in_chunk = std::min(server_.config.tokens_per_chunk, num_tokens_ - tokens_sent_);
    std::string text;
    for (int i = 0; i < in_chunk; ++i) text += " tok";
    tokens_sent_ += in_chunk;
    pending_ = sse(chunk_json(text));
    entry_.chunk_write_ns.push_back(now_ns());
    if (chunk_index_ == 0) entry_.first_write_ns = entry_.chunk_write_ns.back();
    ++chunk_index_;
    if (chunk_index_ == 1 && model_ == "fail-midstream") {
      pending_ += sse({{"error", {{"message", "injected mid-stream failure"}, {"type", "server_error"}}}});
      tokens_sent_ = num_tokens_;
    }
    if (tokens_sent_ < num_tokens_) return write_pending([](Session& self) { self.schedule_next_chunk(); });
    json last = chunk_json("");
    last["choices"][0]["finish_reason"] = "length";
    pending_ += sse(last);
    json usage = {{"id", "fixture"}, {"object", is_chat_ ? "chat.completion.chunk" : "text_completion"},
                  {"created", 0}, {"model", model_}, {"choices", json::array()}, {"usage", usage_json()}};
    pending_ += sse(usage) + http_chunk("data: [DONE]\n\n") + "0\r\n\r\n";
    entry_.last_write_ns = now_ns();
    {
      std::lock_guard lock(server_.log_mutex);
      server_.log.push_back(entry_);
    }
    write_pending([](Session& self) { self.finish_response(); });
  }

  void write_non_streaming() {
    const double total_ms = server_.config.ttft_ms + (num_tokens_ - 1) * server_.config.itl_ms;
    timer_.expires_at(arrival_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(total_ms)));
    timer_.async_wait([self = shared_from_this()](beast::error_code error) {
      if (error) return;
      std::string text;
      for (int i = 0; i < self->num_tokens_; ++i) text += " tok";
      json choice = self->is_chat_ ? json{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}}, {"finish_reason", "length"}}
                                   : json{{"index", 0}, {"text", text}, {"finish_reason", "length"}};
      json body = {{"id", "fixture"}, {"object", self->is_chat_ ? "chat.completion" : "text_completion"}, {"created", 0},
                   {"model", self->model_}, {"choices", json::array({choice})}, {"usage", self->usage_json()}};
      self->entry_.first_write_ns = self->entry_.last_write_ns = now_ns();
      {
        std::lock_guard lock(self->server_.log_mutex);
        self->server_.log.push_back(self->entry_);
      }
      self->write_simple(200, body.dump());
    });
  }

  void write_simple(int status, const std::string& body) {
    const char* reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 400 ? "Bad Request" : "Internal Server Error";
    keep_alive_ = request_.keep_alive();
    pending_ = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{}",
                           status, reason, body.size(), keep_alive_ ? "keep-alive" : "close", body);
    write_pending([](Session& self) { self.finish_response(); });
  }

  void write_pending(std::function<void(Session&)> then) {
    writing_ = std::move(pending_);
    pending_.clear();
    asio::async_write(socket_, asio::buffer(writing_),
                      [self = shared_from_this(), then = std::move(then)](beast::error_code error, size_t) {
                        if (error) return;
                        then(*self);
                      });
  }

  void finish_response() {
    if (keep_alive_) return read_request();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }

  tcp::socket socket_;
  FixtureServer::Impl& server_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  Clock::time_point arrival_;
  FixtureRequestLog entry_;
  std::string model_;
  std::string pending_, writing_;
  int num_tokens_ = 0, tokens_sent_ = 0, chunk_index_ = 0;
  bool is_chat_ = true;
  bool keep_alive_ = true;
};

void accept_loop(FixtureServer::Impl& server) {
  server.acceptor.async_accept([&server](beast::error_code error, tcp::socket socket) {
    if (error) return;
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Session>(std::move(socket), server)->read_request();
    accept_loop(server);
  });
}

}  // namespace

FixtureServer::FixtureServer(FixtureConfig config) : config_(std::move(config)), impl_(std::make_unique<Impl>(config_)) {}

FixtureServer::~FixtureServer() { stop(); }

uint16_t FixtureServer::start() {
  tcp::endpoint endpoint(asio::ip::make_address(config_.address), config_.port);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(4096);
  port_ = impl_->acceptor.local_endpoint().port();
  accept_loop(*impl_);
  thread_ = std::thread([this] { impl_->io.run(); });
  return port_;
}

void FixtureServer::stop() {
  if (!thread_.joinable()) return;
  impl_->io.stop();
  thread_.join();
}

std::string FixtureServer::base_url() const { return fmt::format("http://{}:{}/v1", config_.address, port_); }

std::vector<FixtureRequestLog> FixtureServer::log() const {
  std::lock_guard lock(impl_->log_mutex);
  return impl_->log;
}

}  // namespace tern::bench::testing
