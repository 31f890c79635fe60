#include "upstream_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

namespace tern::testing {
namespace {

using json = nlohmann::json;

// The connection being served: its socket, and its TLS session when serving HTTPS.
thread_local SSL* tls_session = nullptr;

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = tls_session != nullptr ? SSL_write(tls_session, data.data() + done, static_cast<int>(data.size() - done))
                                             : ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

ssize_t read_some(int fd, char* buffer, size_t size) {
  return tls_session != nullptr ? SSL_read(tls_session, buffer, static_cast<int>(size)) : ::recv(fd, buffer, size, 0);
}

std::string chunk(const std::string& data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

/// The result the request's last turn hands back to a tool call, if it does: OpenAI's `tool` message,
/// or Anthropic's tool_result block in the last user turn. Several results are joined with "; ".
std::string last_tool_result(const nlohmann::json& request, bool anthropic) {
  const auto& messages = request.value("messages", nlohmann::json::array());
  std::string out;
  auto add = [&](const nlohmann::json& content) {
    std::string text = content.is_string() ? content.get<std::string>() : std::string();
    if (content.is_array()) {
      for (const auto& block : content) text += block.value("text", "");
    }
    out += (out.empty() ? "" : "; ") + text;
  };
  if (anthropic) {
    if (messages.empty() || !messages.back()["content"].is_array()) return {};
    for (const auto& block : messages.back()["content"]) {
      if (block.value("type", "") == "tool_result") add(block.value("content", nlohmann::json("")));
    }
    return out;
  }
  size_t first = messages.size();  // the trailing run of tool messages, in order
  while (first > 0 && messages[first - 1].value("role", "") == "tool") --first;
  for (size_t i = first; i < messages.size(); ++i) add(messages[i]["content"]);
  return out;
}

/// The SSE stream of a reply that calls the request's tools (two at most, one without parallel calls),
/// each with {"city": "Paris"} sent in two pieces, in the endpoint's own stream shape.
std::string tool_call_stream(const nlohmann::json& request, bool anthropic, const std::string& model) {
  using nlohmann::json;
  auto event = [&](const std::string& name, const json& payload) {
    return anthropic ? chunk(fmt::format("event: {}\ndata: {}\n\n", name, payload.dump())) : chunk("data: " + payload.dump() + "\n\n");
  };
  const json tools = request.value("tools", json::array());
  bool parallel = request.value("parallel_tool_calls", true);
  if (anthropic && request.contains("tool_choice")) parallel = !request["tool_choice"].value("disable_parallel_tool_use", false);
  const size_t calls = std::min<size_t>(tools.size(), parallel ? 2 : 1);
  std::string out;
  if (anthropic) {
    out += event("message_start", {{"type", "message_start"}, {"message", {{"id", "msg_tools"}, {"type", "message"}, {"role", "assistant"},
                                                                          {"model", model}, {"usage", {{"input_tokens", 30}, {"output_tokens", 1}}}}}});
  }
  for (size_t i = 0; i < calls; ++i) {
    const std::string name = anthropic ? tools[i].value("name", "") : tools[i]["function"].value("name", "");
    const std::string id = fmt::format("{}_{}", anthropic ? "toolu" : "call", i);
    for (int piece = 0; piece < 3; ++piece) {
      const std::string arguments = piece == 0 ? "" : piece == 1 ? "{\"city\": " : "\"Paris\"}";
      if (anthropic) {
        if (piece == 0) {
          out += event("content_block_start", {{"type", "content_block_start"}, {"index", i},
                                               {"content_block", {{"type", "tool_use"}, {"id", id}, {"name", name}, {"input", json::object()}}}});
        } else {
          out += event("content_block_delta", {{"type", "content_block_delta"}, {"index", i},
                                               {"delta", {{"type", "input_json_delta"}, {"partial_json", arguments}}}});
        }
      } else {
        json call = {{"index", i}, {"function", {{"arguments", arguments}}}};
        if (piece == 0) call["id"] = id, call["type"] = "function", call["function"]["name"] = name;
        out += event("", {{"choices", {{{"index", 0}, {"delta", {{"tool_calls", {call}}}}, {"finish_reason", nullptr}}}}});
      }
    }
    if (anthropic) out += event("content_block_stop", {{"type", "content_block_stop"}, {"index", i}});
  }
  if (anthropic) {
    out += event("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}},
                                   {"usage", {{"output_tokens", 12}}}});
    out += event("message_stop", {{"type", "message_stop"}});
  } else {
    out += event("", {{"choices", {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "tool_calls"}}}}});
    out += event("", {{"choices", json::array()}, {"usage", {{"prompt_tokens", 30}, {"completion_tokens", 12}}}});
    out += chunk("data: [DONE]\n\n");
  }
  return out;
}

std::string header_value(const std::string& head, const std::string& name) {
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  size_t start = at + 3 + name.size();
  const size_t end = head.find("\r\n", start);
  while (start < end && head[start] == ' ') ++start;
  return head.substr(start, end - start);
}

}  // namespace

UpstreamFixture::UpstreamFixture(int num_chunks, const std::string& cert_file, const std::string& key_file) : num_chunks_(num_chunks) {
  if (!cert_file.empty()) {
    SSL_CTX* context = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(context, cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      throw std::runtime_error("upstream fixture: cannot load the certificate or key");
    }
    tls_ = context;
  }
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 128) != 0) {
    throw std::runtime_error("upstream fixture: cannot listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

UpstreamFixture::~UpstreamFixture() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  if (tls_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(tls_));
}

std::vector<UpstreamRequest> UpstreamFixture::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

int UpstreamFixture::count(const std::string& model) const {
  std::lock_guard lock(mutex_);
  int n = 0;
  for (const auto& r : requests_) n += r.model == model ? 1 : 0;
  return n;
}

bool UpstreamFixture::wait_client_left(const std::string& model, int ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex_);
      for (const auto& r : requests_) {
        if (r.model == model && r.client_left) return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void UpstreamFixture::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lock(mutex_);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void UpstreamFixture::serve(int fd) {
  std::string buffer;
  char data[8192];
  SSL* session = nullptr;
  if (tls_ != nullptr) {
    session = SSL_new(static_cast<SSL_CTX*>(tls_));
    SSL_set_fd(session, fd);
    if (SSL_accept(session) != 1) {  // e.g. the client refused our certificate
      SSL_free(session);
      ::close(fd);
      return;
    }
  }
  tls_session = session;
  struct Cleanup {
    SSL* session;
    ~Cleanup() {
      if (session != nullptr) SSL_free(session);
      tls_session = nullptr;
    }
  } cleanup{session};
  while (!stopping_) {
    // One request: headers, then Content-Length bytes of body.
    size_t head_end;
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if ((session == nullptr || SSL_pending(session) == 0) && ::poll(&p, 1, 100) == 0) {
        if (stopping_) break;
        continue;
      }
      const ssize_t n = read_some(fd, data, sizeof data);
      if (n <= 0) {
        ::close(fd);
        return;
      }
      buffer.append(data, static_cast<size_t>(n));
    }
    if (stopping_) break;
    const std::string head = buffer.substr(0, head_end);
    const size_t length = std::stoul(header_value(head, "content-length").empty() ? "0" : header_value(head, "content-length"));
    while (buffer.size() < head_end + 4 + length) {
      const ssize_t n = read_some(fd, data, sizeof data);
      if (n <= 0) {
        ::close(fd);
        return;
      }
      buffer.append(data, static_cast<size_t>(n));
    }
    const std::string body = buffer.substr(head_end + 4, length);
    buffer.erase(0, head_end + 4 + length);
    const std::string path = head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1);
    if (head.starts_with("GET ")) {  // health checks: /ready is healthy, anything else is not
      const bool ready = path == "/ready";
      const std::string text = ready ? R"({"status":"ready"})" : R"({"status":"down"})";
      if (!write_all(fd, fmt::format("HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                                     ready ? "200 OK" : "503 Service Unavailable", text.size(), text))) {
        break;
      }
      continue;
    }
    json request = json::parse(body, nullptr, false);
    const std::string model = request.is_object() ? request.value("model", "") : "";
    const bool anthropic = path == "/v1/messages";
    std::string auth = header_value(head, "authorization");
    if (auth.empty()) auth = header_value(head, "x-api-key");
    size_t index;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back({.path = path, .model = model, .body = body, .authorization = auth, .client_left = false});
      index = requests_.size() - 1;
    }
    auto mark_left = [&] {
      std::lock_guard lock(mutex_);
      requests_[index].client_left = true;
    };

    auto plain = [&](int status, const std::string& text, const std::string& extra = "") {
      return write_all(fd, fmt::format("HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}", status,
                                       text.size(), extra, text));
    };
    if (model == "fail-500") {
      if (!plain(500, R"({"error":{"message":"injected 500","type":"server_error"}})")) break;
      continue;
    }
    if (model == "fail-400" || model == "fail-413") {  // the request's own fault, in the endpoint's error shape
      const int status = model == "fail-400" ? 400 : 413;
      const std::string message = model == "fail-400" ? "injected 400" : "Request exceeds the maximum allowed number of bytes.";
      const json error = anthropic ? json{{"type", "error"}, {"error", {{"type", status == 413 ? "request_too_large" : "invalid_request_error"}, {"message", message}}}}
                                   : json{{"error", {{"message", message}, {"type", "invalid_request_error"}, {"param", "messages"}, {"code", "too_big"}}}};
      if (!plain(status, error.dump())) break;
      continue;
    }
    if (model == "rate-limit-once" && rate_limited_.fetch_add(1) == 0) {
      if (!plain(429, R"({"error":{"message":"slow down","type":"rate_limit_error"}})", "Retry-After: 1\r\n")) break;
      continue;
    }
    if (model == "hang") {
      // Nothing until the client leaves (EOF) or the fixture stops.
      while (!stopping_) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) {
          if (read_some(fd, data, sizeof data) <= 0) {
            mark_left();
            break;
          }
        }
      }
      ::close(fd);
      return;
    }
    if (!write_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")) break;
    // An agent's tool: the first turn calls the request's tools; a turn that hands results back is
    // answered in text quoting them ("result: ..."), below.
    const std::string tool_result = model == "tools" ? last_tool_result(request, anthropic) : std::string();
    if (model == "tools" && tool_result.empty()) {
      if (!write_all(fd, tool_call_stream(request, anthropic, model) + "0\r\n\r\n")) break;
      continue;
    }
    auto event = [&](const std::string& name, const json& payload) {
      return anthropic ? chunk(fmt::format("event: {}\ndata: {}\n\n", name, payload.dump())) : chunk("data: " + payload.dump() + "\n\n");
    };
    auto text_event = [&](int i) {
      const std::string text = !tool_result.empty() ? (i == 0 ? "result: " + tool_result : std::string()) : fmt::format(" w{}", i);
      if (anthropic) return event("content_block_delta", {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", text}}}});
      if (path == "/v1/completions") return event("", {{"choices", {{{"index", 0}, {"text", text}, {"finish_reason", nullptr}}}}});
      return event("", {{"choices", {{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}}}});
    };
    bool ok = true;
    if (anthropic) {
      ok = write_all(fd, event("message_start", {{"type", "message_start"},
                                                 {"message", {{"id", "msg_fixture"}, {"type", "message"}, {"role", "assistant"}, {"model", model},
                                                              {"usage", {{"input_tokens", 7}, {"cache_read_input_tokens", 3}, {"cache_creation_input_tokens", 2}, {"output_tokens", 1}}}}}}));
      ok = ok && write_all(fd, event("content_block_start", {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}}));
    }
    if (model == "bad-chunking") {  // a chunk-size line that is not hex: broken HTTP framing
      write_all(fd, text_event(0) + "zz\r\ndata: x\r\n");
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      return;
    }
    if (model == "bad-json-first") {
      write_all(fd, chunk("data: {not json\n\n"));
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      return;
    }
    const bool stops_early = model == "reset-midstream" || model == "bad-json-midstream" || model == "truncated";
    const int chunks = stops_early ? 2 : num_chunks_;
    for (int i = 0; ok && i < chunks; ++i) {
      if (model == "trickle" && i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ok = write_all(fd, text_event(i));
    }
    if (!ok) {
      mark_left();
      break;
    }
    if (model == "reset-midstream") {
      linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ::close(fd);
      return;
    }
    if (model == "bad-json-midstream") write_all(fd, chunk("data: {\"choices\": [oops\n\n"));
    if (model == "bad-json-midstream" || model == "truncated") {
      write_all(fd, "0\r\n\r\n");
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      return;
    }
    if (anthropic) {
      ok = write_all(fd, event("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}})) &&
           write_all(fd, event("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                                                 {"usage", {{"output_tokens", chunks}}}})) &&
           write_all(fd, event("message_stop", {{"type", "message_stop"}}));
    } else {
      const bool chat = path == "/v1/chat/completions";
      json last = {{"choices", {{{"index", 0}, {chat ? "delta" : "text", chat ? json::object() : json("")}, {"finish_reason", "stop"}}}}};
      ok = write_all(fd, event("", last)) &&
           write_all(fd, event("", {{"choices", json::array()},
                                    {"usage", {{"prompt_tokens", 12}, {"completion_tokens", chunks}, {"prompt_tokens_details", {{"cached_tokens", 4}}}}}})) &&
           write_all(fd, chunk("data: [DONE]\n\n"));
    }
    if (!ok || !write_all(fd, "0\r\n\r\n")) break;
  }
  ::close(fd);
}

}  // namespace tern::testing
