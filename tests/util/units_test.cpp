// Sizes and durations typed on the command line (--kv-cache-memory, --itl-target, --max-prefill-wait).

#include "util/units.h"

#include <gtest/gtest.h>

namespace tern {
namespace {

TEST(Units, Bytes) {
  EXPECT_EQ(*parse_bytes("1000000"), 1000000);
  EXPECT_EQ(*parse_bytes("2G"), int64_t{2} << 30);
  EXPECT_EQ(*parse_bytes("512M"), int64_t{512} << 20);
  EXPECT_EQ(*parse_bytes("64MiB"), int64_t{64} << 20);
  EXPECT_EQ(*parse_bytes("1.5k"), 1536);
  EXPECT_EQ(parse_bytes("lots").error().message, "'lots' is not a size (examples: 2G, 512M, 1000000)");
  EXPECT_EQ(parse_bytes("2T").error().message, "'2T' has an unknown unit (use K, M or G)");
  EXPECT_EQ(parse_bytes("0").error().message, "'0' must be positive and below 8 EiB");
  EXPECT_EQ(parse_bytes("1e30").error().message, "'1e30' must be positive and below 8 EiB");
}

TEST(Units, Seconds) {
  EXPECT_DOUBLE_EQ(*parse_seconds("100ms"), 0.1);
  EXPECT_DOUBLE_EQ(*parse_seconds("0.25s"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_seconds("2"), 2.0);
  EXPECT_DOUBLE_EQ(*parse_seconds("off"), 0.0);
  EXPECT_DOUBLE_EQ(*parse_seconds("0"), 0.0);
  EXPECT_EQ(parse_seconds("soon").error().message, "'soon' is not a duration (examples: 100ms, 0.5s, off)");
  EXPECT_DOUBLE_EQ(*parse_seconds("5m"), 300.0);
  EXPECT_DOUBLE_EQ(*parse_seconds("2h"), 7200.0);
  EXPECT_EQ(parse_seconds("5parsecs").error().message, "'5parsecs' has an unknown unit (use ms, s, m, h or d)");
  EXPECT_EQ(parse_seconds("-1s").error().message, "'-1s' must be between 0 and 7 days");
  EXPECT_EQ(parse_seconds("169h").error().message, "'169h' must be between 0 and 7 days");
  EXPECT_DOUBLE_EQ(*parse_seconds("30d", 36500), 30 * 86400.0);
  EXPECT_EQ(parse_seconds("8d").error().message, "'8d' must be between 0 and 7 days");
}

}  // namespace
}  // namespace tern
