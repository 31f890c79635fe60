// StopMatcher: stop strings over streamed text. Text that could still begin a stop string is held
// back; released text never contains a stop, never splits a UTF-8 character, and everything held is
// released by flush() when generation ends without a stop.

#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tern::engine {
namespace {

/// True if `s` is valid UTF-8 made of complete characters (no sequence cut at either end).
bool complete_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

struct Streamed {
  std::string text;       // everything released, flush included (when not stopped)
  bool stopped = false;
  size_t stopped_at = 0;  // index of the piece that stopped
};

/// Pushes `pieces` until a stop; checks every released chunk; flushes at the end if not stopped.
Streamed stream(StopMatcher& m, const std::vector<std::string>& pieces) {
  Streamed out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    StopMatcher::Step step = m.push(pieces[i]);
    EXPECT_TRUE(complete_utf8(step.text)) << "piece " << i << " released a split character";
    out.text += step.text;
    if (step.stopped) {
      out.stopped = true;
      out.stopped_at = i;
      return out;
    }
  }
  const std::string rest = m.flush();
  EXPECT_TRUE(complete_utf8(rest));
  out.text += rest;
  return out;
}

// No stop strings: every piece is released at once, unchanged.
TEST(StopMatcherTest, NoStopsPassesThrough) {
  StopMatcher m({});
  for (const char* piece : {"Hello", ",", " wor", "ld", "", "\xE2\x82\xAC", "!"}) {
    StopMatcher::Step step = m.push(piece);
    EXPECT_EQ(step.text, piece);
    EXPECT_FALSE(step.stopped);
  }
  EXPECT_EQ(m.flush(), "");
}

// Empty stop strings are ignored (they would otherwise match everywhere).
TEST(StopMatcherTest, EmptyStopStringIgnored) {
  StopMatcher m({""});
  StopMatcher::Step step = m.push("abc");
  EXPECT_EQ(step.text, "abc");
  EXPECT_FALSE(step.stopped);
}

// Text before a stop string in the same piece is released; the stop and what follows are not.
TEST(StopMatcherTest, TextBeforeStopReleased) {
  StopMatcher m({"STOP"});
  StopMatcher::Step step = m.push("abc STOP def");
  EXPECT_TRUE(step.stopped);
  EXPECT_EQ(step.text, "abc ");
}

// A stop at the very start releases nothing.
TEST(StopMatcherTest, StopAtStart) {
  StopMatcher m({"###"});
  StopMatcher::Step step = m.push("###x");
  EXPECT_TRUE(step.stopped);
  EXPECT_EQ(step.text, "");
}

// A stop string split over several pieces is found; none of it is released.
TEST(StopMatcherTest, StopSplitOverPieces) {
  StopMatcher m({"END"});
  std::string released;
  StopMatcher::Step s1 = m.push("hello E");
  EXPECT_FALSE(s1.stopped);
  released += s1.text;
  StopMatcher::Step s2 = m.push("N");
  EXPECT_FALSE(s2.stopped);
  released += s2.text;
  EXPECT_EQ(released.find('E'), std::string::npos) << "released the start of the stop: " << released;
  StopMatcher::Step s3 = m.push("D and more");
  EXPECT_TRUE(s3.stopped);
  released += s3.text;
  EXPECT_EQ(released, "hello ");
}

// One character per piece, the stop spread over all of them.
TEST(StopMatcherTest, StopOneCharacterPerPiece) {
  StopMatcher m({"</answer>"});
  const std::string text = "42</answer>ignored";
  std::vector<std::string> pieces;
  for (char c : text) pieces.emplace_back(1, c);
  Streamed out = stream(m, pieces);
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.stopped_at, 10u);  // the '>' completes it
  EXPECT_EQ(out.text, "42");
}

// Several stops: the one that starts earliest in the text wins.
TEST(StopMatcherTest, EarliestOfSeveralStops) {
  {
    StopMatcher m({"world", "lo"});
    StopMatcher::Step step = m.push("hello world");
    EXPECT_TRUE(step.stopped);
    EXPECT_EQ(step.text, "hel");
    EXPECT_EQ(step.matched, "lo");  // which one ended it (Anthropic's stop_sequence)
  }
  {
    StopMatcher m({"lo", "world"});  // order of the list does not matter
    StopMatcher::Step step = m.push("hello world");
    EXPECT_TRUE(step.stopped);
    EXPECT_EQ(step.text, "hel");
  }
  {
    // Both complete in the same piece; the earlier one (started in held text) wins.
    StopMatcher m({"cd", "abcdef"});
    EXPECT_FALSE(m.push("xxab").stopped);
    StopMatcher::Step step = m.push("cdef");  // "xxabcdef": "abcdef" at 2, "cd" at 4
    EXPECT_TRUE(step.stopped);
    EXPECT_EQ(step.text, "xx");
    EXPECT_EQ(step.matched, "abcdef");
  }
}

// Held-back text is released by flush() at the end of generation.
TEST(StopMatcherTest, HeldBackTextReleasedOnFlush) {
  StopMatcher m({"STOP"});
  std::string released;
  StopMatcher::Step step = m.push("abcST");
  EXPECT_FALSE(step.stopped);
  released += step.text;
  EXPECT_LT(released.size(), 5u);  // the tail that may begin "STOP" is held
  step = m.push("AR");              // "STAR": not a stop after all
  EXPECT_FALSE(step.stopped);
  released += step.text;
  released += m.flush();
  EXPECT_EQ(released, "abcSTAR");
  EXPECT_EQ(m.flush(), "");  // flushing again gives nothing
}

// Only as much is held as the longest stop needs (its length - 1 bytes).
TEST(StopMatcherTest, HoldsOnlyLongestStopMinusOne) {
  StopMatcher m({"ab", "wxyz"});
  StopMatcher::Step step = m.push("0123456789");
  EXPECT_EQ(step.text, "0123456");
  EXPECT_EQ(m.flush(), "789");
}

// Released text never splits a UTF-8 character, even when the hold boundary falls inside one.
TEST(StopMatcherTest, Utf8NeverSplit) {
  // "a€" is 61 E2 82 AC; holding 2 bytes would cut inside the euro sign.
  StopMatcher m({"\n\n\n"});
  StopMatcher::Step step = m.push("a\xE2\x82\xAC");
  EXPECT_EQ(step.text, "a");
  EXPECT_EQ(m.flush(), "\xE2\x82\xAC");

  // 4-byte characters (emoji) with a long stop.
  StopMatcher m2({"<|end|>"});
  std::string released;
  for (const char* piece : {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x81", "x", "\xC3\xA9\xC3\xA9", "\xF0\x9F\x98\x82"}) {
    StopMatcher::Step s = m2.push(piece);
    EXPECT_TRUE(complete_utf8(s.text)) << "released a split character";
    released += s.text;
  }
  released += m2.flush();
  EXPECT_EQ(released, "\xF0\x9F\x98\x80\xF0\x9F\x98\x81x\xC3\xA9\xC3\xA9\xF0\x9F\x98\x82");
}

// A stop string made of multi-byte characters.
TEST(StopMatcherTest, MultiByteStop) {
  StopMatcher m({"\xE3\x80\x82\xE3\x80\x82"});  // "。。"
  Streamed out = stream(m, {"\xE4\xBD\xA0\xE5\xA5\xBD", "\xE3\x80\x82", "\xE3\x80\x82", "more"});
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.stopped_at, 2u);
  EXPECT_EQ(out.text, "\xE4\xBD\xA0\xE5\xA5\xBD");
}

// Random texts of mixed 1- to 4-byte characters, split at character boundaries into random pieces,
// against a reference: the stream stops at the first piece after which some stop occurs in the
// text so far, and releases exactly the text before that stop's earliest occurrence.
TEST(StopMatcherTest, RandomAgainstReference) {
  std::mt19937 rng(123);
  const std::vector<std::string> alphabet = {"a", "b", "c", " ", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\n"};
  const auto uniform = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> chars;
    for (size_t n = uniform(0, 30); n > 0; --n) chars.push_back(alphabet[uniform(0, alphabet.size() - 1)]);
    std::vector<std::string> stops;
    for (size_t n = uniform(0, 3); n > 0; --n) {
      std::string s;
      for (size_t k = uniform(1, 4); k > 0; --k) s += alphabet[uniform(0, alphabet.size() - 1)];
      stops.push_back(s);
    }
    std::vector<std::string> pieces;
    for (size_t i = 0; i < chars.size();) {
      std::string piece;
      for (size_t k = uniform(1, 4); k > 0 && i < chars.size(); --k) piece += chars[i++];
      pieces.push_back(piece);
    }
    if (uniform(0, 5) == 0) pieces.insert(pieces.begin() + static_cast<long>(uniform(0, pieces.size())), "");

    // Reference.
    std::string expected;
    bool expect_stop = false;
    size_t expect_at = 0;
    std::string so_far;
    for (size_t i = 0; i < pieces.size() && !expect_stop; ++i) {
      so_far += pieces[i];
      size_t first = std::string::npos;
      for (const auto& s : stops) first = std::min(first, so_far.find(s));
      if (first != std::string::npos) {
        expect_stop = true;
        expect_at = i;
        expected = so_far.substr(0, first);
      }
    }
    if (!expect_stop) expected = so_far;

    StopMatcher m(stops);
    Streamed out = stream(m, pieces);
    ASSERT_EQ(out.stopped, expect_stop) << "trial " << trial;
    if (expect_stop) {
      ASSERT_EQ(out.stopped_at, expect_at) << "trial " << trial;
    }
    ASSERT_EQ(out.text, expected) << "trial " << trial;
    for (const auto& s : stops) ASSERT_EQ(out.text.find(s), std::string::npos) << "released a stop string";
  }
}

}  // namespace
}  // namespace tern::engine
