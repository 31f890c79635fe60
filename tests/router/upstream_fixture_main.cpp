// The fake upstream as a program, for end-to-end tests in Python: prints "port N" and serves until
// stdin closes. With two arguments (certificate and key, PEM) it serves HTTPS.
#include <cstdio>
#include <iostream>
#include <string>

#include "upstream_fixture.h"

int main(int argc, char** argv) {
  tern::testing::UpstreamFixture fixture(4, argc > 2 ? argv[1] : "", argc > 2 ? argv[2] : "");
  std::printf("port %u\n", fixture.port());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
