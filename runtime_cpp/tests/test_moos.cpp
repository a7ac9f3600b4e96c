// The MOOSComp pipeline fed the Python reference's probabilities must give the same texts, exactly.
#include <gtest/gtest.h>

#include "error.h"
#include "moos.h"
#include "vectors.h"

namespace compkit::testing {
namespace {

CompressOptions options_of(const nlohmann::json& c) {
  CompressOptions o;
  o.rate = c["rate"].get<double>();
  o.target_token = c["target_token"].get<int32_t>();
  o.force_tokens = strings(c["force_tokens"]);
  o.force_reserve_digit = c["force_reserve_digit"].get<bool>();
  o.drop_consecutive = c["drop_consecutive"].get<bool>();
  o.token_to_word = c["token_to_word"].get<std::string>();
  return o;
}

std::unique_ptr<MoosCompressor> replay_compressor(const VectorSet& v, double outlier_weight) {
  MoosConfig cfg;
  cfg.outlier_weight = outlier_weight;
  cfg.max_seq_len = v.j["max_seq_len"].get<int32_t>();
  cfg.max_force_token = v.j["max_force_token"].get<int32_t>();
  return std::make_unique<MoosCompressor>(Tokenizer::from_dir(v.tokenizer_dir()), replay_scorer(v), cfg);
}

TEST(Moos, ReproducesPythonCompressedTextsExactly) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set (tests/test_runtime_cpp.py sets it)";
  for (const auto& dir : dirs) {
    const VectorSet& v = load_vectors(dir);
    ASSERT_EQ(v.j["token_counter"].get<std::string>(), "compressor tokenizer (offline default)");
    std::map<double, std::unique_ptr<MoosCompressor>> by_weight;
    int bad = 0, total = 0;
    for (const auto& c : v.j["compress"]) {
      double w = c["outlier_weight"].get<double>();
      auto& m = by_weight[w];
      if (!m) m = replay_compressor(v, w);
      const std::string text = v.j["texts"][c["text"].get<size_t>()].get<std::string>();
      CompressResult r;
      try {
        r = m->compress(text, options_of(c));
      } catch (const Error& e) {
        ADD_FAILURE() << v.name << " text " << c["text"] << ": " << e.what();
        ++bad;
        continue;
      }
      ++total;
      const std::string want = c["compressed"].get<std::string>();
      bool same = r.compressed == want && r.origin_tokens == c["origin_tokens"].get<int32_t>() &&
                  r.compressed_tokens == c["compressed_tokens"].get<int32_t>();
      if (!same && ++bad <= 3)
        ADD_FAILURE() << v.name << " text " << c["text"] << " case " << c.dump().substr(0, 200) << "\n got: " << r.compressed
                      << "\nwant: " << want;
      EXPECT_EQ(r.words.size(), r.kept.size());
    }
    EXPECT_EQ(bad, 0) << v.name << ": " << bad << " of " << total << " compressions differ";
    EXPECT_GT(total, 100) << v.name << ": too few compression cases in the vectors";
  }
}

TEST(Moos, BadInputsAreErrorsWithReasons) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set";
  const VectorSet& v = load_vectors(dirs.front());
  auto m = replay_compressor(v, 0.0);
  auto code_of = [&](const std::string& text, double rate) {
    CompressOptions o;
    o.rate = rate;
    try {
      m->compress(text, o);
    } catch (const Error& e) {
      return e.code;
    }
    return COMPKIT_OK;
  };
  EXPECT_EQ(code_of("", 0.5), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(code_of(" \n\t ", 0.5), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(code_of("bad \xFF\xFE utf8", 0.5), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(code_of("overlong \xC0\xAF slash", 0.5), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(code_of("fine text", 0.0), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(code_of("fine text", 1.5), COMPKIT_ERR_INVALID_ARGUMENT);
  // a window longer than every bucket of the model
  auto small = std::make_unique<FunctionScorer>(
      [](const std::vector<int32_t>&, const std::vector<int32_t>&, std::vector<float>*, std::vector<float>*) {},
      std::vector<int32_t>{8, 16}, false);
  MoosCompressor bucketed(Tokenizer::from_dir(v.tokenizer_dir()), std::move(small));
  try {
    bucketed.compress("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen", {});
    ADD_FAILURE() << "a window longer than every bucket was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code, COMPKIT_ERR_MODEL_SPEC);
    EXPECT_NE(std::string(e.what()).find("bucket"), std::string::npos) << e.what();
  }
  // outlier fusion without an outlier output
  auto no_outlier = std::make_unique<FunctionScorer>(
      [](const std::vector<int32_t>&, const std::vector<int32_t>&, std::vector<float>*, std::vector<float>*) {},
      std::vector<int32_t>{}, false);
  MoosConfig cfg;
  cfg.outlier_weight = 0.5;
  EXPECT_THROW(MoosCompressor(Tokenizer::from_dir(v.tokenizer_dir()), std::move(no_outlier), cfg), Error);
}

TEST(Moos, PicksTheSmallestBucketAndPadsWithAMask) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set";
  const VectorSet& v = load_vectors(dirs.front());
  std::vector<std::pair<size_t, size_t>> seen;  // (length, real tokens)
  auto fn = [&](const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* p, std::vector<float>*) {
    size_t real = 0;
    for (int32_t m : mask) real += static_cast<size_t>(m);
    seen.push_back({ids.size(), real});
    for (size_t i = 0; i < p->size(); ++i) (*p)[i] = static_cast<float>(i % 7) / 7.0f;
  };
  MoosCompressor m(Tokenizer::from_dir(v.tokenizer_dir()), std::make_unique<FunctionScorer>(fn, std::vector<int32_t>{64, 16, 32}, false));
  auto r = m.compress("A short sentence. And a second, slightly longer sentence follows it here.", {});
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].first, 32u);  // 16 < window length <= 32
  EXPECT_GT(seen[0].second, 16u);
  EXPECT_FALSE(r.compressed.empty());
  EXPECT_GE(r.total_ms, r.forward_ms);
}

}  // namespace
}  // namespace compkit::testing
