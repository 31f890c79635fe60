// HTTPS to upstreams: a fake upstream with a certificate from a throwaway CA (made here with the
// openssl command) is reached when the deployment trusts that CA, and refused — before anything is
// sent — when it does not, or when the certificate names another host.

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "router/remote_provider.h"
#include "upstream_fixture.h"

namespace tern::router {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// A CA and two server certificates signed by it: one for 127.0.0.1/localhost, one for another host.
class Certificates {
 public:
  Certificates() : dir_(fs::temp_directory_path() / ("tern-tls-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
    const std::string d = dir_.string();
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + d + "/ca.key -out " + d + "/ca.pem -days 2 -subj /CN=tern-test-ca");
    sign("server", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    sign("other", "subjectAltName=DNS:other.example");
  }
  ~Certificates() { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  void sign(const std::string& name, const std::string& san) {
    const std::string d = dir_.string();
    std::ofstream(d + "/" + name + ".ext") << san << "\n";
    run("openssl req -newkey rsa:2048 -nodes -keyout " + d + "/" + name + ".key -out " + d + "/" + name + ".csr -subj /CN=" + name);
    run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -out " + d +
        "/" + name + ".pem -days 2 -extfile " + d + "/" + name + ".ext");
  }
  static void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + command);
  }
  fs::path dir_;
};

wire::Event call(const std::string& base_url, const std::string& ca_file, std::string* text) {
  RemoteConfig config{.name = "tls", .kind = RemoteKind::kOpenAi, .base_url = base_url, .api_key = {}, .upstream_model = "ok",
                      .ca_file = ca_file, .max_connections = 2, .first_byte_timeout = 5s, .timeout = 10s, .default_max_tokens = 16,
                      .health_path = {}, .health_interval = 5s};
  auto provider = make_remote_provider(config);
  if (!provider) throw std::runtime_error(provider.error().message);
  wire::Request request;
  request.model = "m";
  request.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "hi"}}});
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<wire::Event> last;
  auto submitted = (*provider)->submit(request, [&](wire::Event&& e) {
    std::lock_guard lock(mutex);
    *text += e.text;
    if (e.finished) {
      last = std::move(e);
      cv.notify_all();
    }
  });
  EXPECT_TRUE(submitted);
  std::unique_lock lock(mutex);
  EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return last.has_value(); }));
  return last.value_or(wire::Event{});
}

TEST(Tls, AnHttpsUpstreamTrustedThroughItsCa) {
  if (std::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl command";
  Certificates certs;
  testing::UpstreamFixture upstream(4, certs.path("server.pem"), certs.path("server.key"));
  ASSERT_TRUE(upstream.base_url().starts_with("https://"));

  std::string text;
  wire::Event last = call(upstream.base_url(), certs.path("ca.pem"), &text);
  EXPECT_FALSE(last.error) << last.error->message;
  EXPECT_EQ(text, " w0 w1 w2 w3");
  EXPECT_EQ(upstream.count("ok"), 1);

  // The system store does not know the throwaway CA: refused in the handshake, nothing sent.
  text.clear();
  last = call(upstream.base_url(), "", &text);
  ASSERT_TRUE(last.error);
  EXPECT_NE(last.error->message.find("certificate verify failed"), std::string::npos) << last.error->message;
  EXPECT_TRUE(last.error->is_retryable);
  EXPECT_EQ(upstream.count("ok"), 1);
}

TEST(Tls, ACertificateForAnotherHostIsRefused) {
  if (std::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl command";
  Certificates certs;
  testing::UpstreamFixture upstream(4, certs.path("other.pem"), certs.path("other.key"));
  std::string text;
  wire::Event last = call(upstream.base_url(), certs.path("ca.pem"), &text);
  ASSERT_TRUE(last.error);
  EXPECT_NE(last.error->message.find("certificate verify failed"), std::string::npos) << last.error->message;
  EXPECT_EQ(upstream.count("ok"), 0);
  EXPECT_TRUE(text.empty());
}

TEST(Tls, ABadCaFileIsAnErrorAtStart) {
  RemoteConfig config{.name = "tls", .kind = RemoteKind::kOpenAi, .base_url = "https://127.0.0.1:1/v1", .api_key = {},
                      .upstream_model = "ok", .ca_file = "/nonexistent/ca.pem", .max_connections = 2, .first_byte_timeout = 5s,
                      .timeout = 10s, .default_max_tokens = 16, .health_path = {}, .health_interval = 5s};
  auto provider = make_remote_provider(config);
  ASSERT_FALSE(provider);
  EXPECT_NE(provider.error().message.find("CA file /nonexistent/ca.pem"), std::string::npos) << provider.error().message;
}

}  // namespace
}  // namespace tern::router
