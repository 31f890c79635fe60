// HttpStreamClient's connection pool against a raw server that closes keep-alive connections soon after
// answering, as servers do with idle ones (an idle timeout).
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "http/client.h"

namespace tern::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

/// Answers one request per connection with a keep-alive SSE response, then closes the connection after
/// `idle_close` (in its own thread).
class ClosingServer {
 public:
  explicit ClosingServer(std::chrono::milliseconds idle_close) : idle_close_(idle_close), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~ClosingServer() {
    stopping_ = true;
    // Wake the blocking accept with one last connection.
    tcp::socket poke(io_);
    boost::system::error_code ignored;
    poke.connect(acceptor_.local_endpoint(), ignored);
    thread_.join();
    for (auto& t : connections_) t.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted() const { return accepted_.load(); }
  /// Waits (up to 10 s) until the server has closed `count` connections.
  bool wait_closed(int count) const {
    for (int i = 0; i < 1000 && closed_.load() < count; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return closed_.load() >= count;
  }

 private:
  void accept_loop() {
    while (true) {
      tcp::socket socket(io_);
      boost::system::error_code error;
      acceptor_.accept(socket, error);
      if (stopping_ || error) return;
      ++accepted_;
      connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }
  void serve(tcp::socket socket) {
    boost::system::error_code error;
    beast::flat_buffer buffer;
    beast::http::request<beast::http::string_body> request;
    beast::http::read(socket, buffer, request, error);
    if (error) return;
    beast::http::response<beast::http::string_body> response(beast::http::status::ok, 11);
    response.set(beast::http::field::content_type, "text/event-stream");
    response.keep_alive(true);
    response.body() = "data: {\"ok\":true}\n\n";
    response.prepare_payload();
    beast::http::write(socket, response, error);
    std::this_thread::sleep_for(idle_close_);
    socket.close(error);
    ++closed_;
  }

  std::chrono::milliseconds idle_close_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::vector<std::thread> connections_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> closed_{0};
};

/// Posts `count` requests at once and runs the client's loop until all have finished; their outcomes.
std::vector<ErrorKind> post_all(asio::io_context& io, HttpStreamClient& client, int count) {
  std::vector<ErrorKind> kinds;
  for (int i = 0; i < count; ++i) {
    StreamCallbacks callbacks;
    callbacks.on_finished = [&kinds](ErrorKind kind, int, std::string, Clock::time_point) { kinds.push_back(kind); };
    client.post_stream("/chat", "{}", std::chrono::seconds(5), std::move(callbacks));
  }
  io.restart();
  while (static_cast<int>(kinds.size()) < count && io.run_one() > 0) {
  }
  return kinds;
}

// Two requests at once on a pool of `max_connections`, both connections then closed by the server while
// idle, then one more request: it finds a stale connection first, and its one retry must succeed.
void expect_a_request_after_stale_connections_succeeds(size_t max_connections) {
  ClosingServer server(std::chrono::milliseconds(50));
  asio::io_context io;
  auto url = parse_url("http://127.0.0.1:" + std::to_string(server.port()));
  ASSERT_TRUE(url.has_value());
  auto client = HttpStreamClient::create(io.get_executor(), *url, max_connections, {});
  ASSERT_TRUE(client.has_value()) << client.error().message;

  EXPECT_EQ(post_all(io, **client, 2), (std::vector<ErrorKind>{ErrorKind::kNone, ErrorKind::kNone}));
  EXPECT_EQ(server.accepted(), 2);
  ASSERT_TRUE(server.wait_closed(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the FINs reach the client's sockets

  EXPECT_EQ(post_all(io, **client, 1), std::vector<ErrorKind>{ErrorKind::kNone});
  EXPECT_EQ(server.accepted(), 3) << "the retry opens a new connection";
  EXPECT_LE((*client)->num_open_connections(), max_connections);
}

// The retry must open a new connection rather than take the other stale one.
TEST(HttpStreamClientTest, ARetryAfterAStaleKeepAliveConnectionOpensAFreshOne) {
  expect_a_request_after_stale_connections_succeeds(4);
}

// The same when every allowed connection is open (and idle, and stale): the retry closes one to make room.
TEST(HttpStreamClientTest, ARetryMakesRoomWhenEveryConnectionIsOpen) { expect_a_request_after_stale_connections_succeeds(2); }

}  // namespace
}  // namespace tern::http
