// EvoComp selection against compressors.evo.select, and the ExecuTorch scorers against eager PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "error.h"
#include "executorch_model.h"
#include "moos.h"
#include "vectors.h"

namespace compkit::testing {
namespace {

TEST(Evo, SelectReproducesPythonIndices) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set";
  int cases = 0;
  for (const auto& dir : dirs) {
    for (const auto& c : load_vectors(dir).j["evo"]["select"]) {
      auto scores = c["scores"].get<std::vector<float>>();
      int32_t k = c["k"].is_null() ? 0 : c["k"].get<int32_t>();
      double ratio = c["ratio"].is_null() ? 0.0 : c["ratio"].get<double>();
      auto got = evo_select(scores.data(), static_cast<int32_t>(scores.size()), k, ratio);
      EXPECT_EQ(got, c["kept"].get<std::vector<int32_t>>()) << "n=" << scores.size() << " k=" << k << " ratio=" << ratio;
      ++cases;
    }
  }
  EXPECT_GT(cases, 50);
}

TEST(Evo, TiesKeepTheLowerIndexAndCountsRoundHalfUp) {
  std::vector<float> s{1, 3, 3, 2, 3, 0};
  EXPECT_EQ(evo_select(s.data(), 6, 2, 0), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(evo_select(s.data(), 6, 0, 2.0), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(evo_keep_count(5, 0, 2.0), 3);   // 2.5 rounds up
  EXPECT_EQ(evo_keep_count(7, 0, 2.0), 4);   // 3.5 rounds up
  EXPECT_EQ(evo_keep_count(1, 0, 100.0), 1);  // at least one
  EXPECT_THROW(evo_keep_count(5, 6, 0), Error);
  EXPECT_THROW(evo_keep_count(5, 0, 0.5), Error);
  EXPECT_THROW(evo_keep_count(5, 0, NAN), Error);
  std::vector<float> nan{1, NAN, 2};
  EXPECT_THROW(evo_select(nan.data(), 3, 1, 0), Error);
}

// ---------------------------------------------------------------- ExecuTorch
std::vector<std::string> pte_files(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".pte" && e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ExecuTorch, MoosProgramMatchesEagerProbabilities) {
  std::string dir = env_or_empty("COMPKIT_PTE_CASE");
  if (dir.empty()) GTEST_SKIP() << "COMPKIT_PTE_CASE not set (tests/test_runtime_cpp.py sets it)";
  const VectorSet& v = load_vectors(dir);
  auto scorer = make_executorch_scorer(pte_files(dir, "moos_"));
  const int32_t bucket = scorer->seq_lens().back();
  const int32_t pad = 0;
  double worst_p = 0, worst_z = 0;
  int windows = 0;
  for (const auto& w : v.j["windows"]) {
    auto ids = w["ids"].get<std::vector<int32_t>>();
    if (static_cast<int32_t>(ids.size()) > bucket) continue;
    auto want_p = w["keep_prob"].get<std::vector<float>>();
    std::vector<int32_t> padded(static_cast<size_t>(bucket), pad), mask(static_cast<size_t>(bucket), 0);
    std::copy(ids.begin(), ids.end(), padded.begin());
    std::fill(mask.begin(), mask.begin() + static_cast<long>(ids.size()), 1);
    std::vector<float> p, z;
    scorer->score(padded, mask, &p, &z);
    for (size_t i = 0; i < ids.size(); ++i) worst_p = std::max(worst_p, std::fabs(double(p[i]) - want_p[i]));
    if (scorer->has_outlier() && w.contains("outlier_z")) {
      auto want_z = w["outlier_z"].get<std::vector<float>>();
      for (size_t i = 0; i < ids.size(); ++i) worst_z = std::max(worst_z, std::fabs(double(z[i]) - want_z[i]));
    }
    if (++windows >= 200) break;
  }
  ASSERT_GT(windows, 20);
  EXPECT_LE(worst_p, 1e-4) << "keep_prob max-abs error over " << windows << " windows";
  EXPECT_LE(worst_z, 1e-3) << "outlier_z max-abs error over " << windows << " windows";
  std::cout << "[ executorch ] " << windows << " windows, keep_prob max-abs " << worst_p << ", outlier_z max-abs " << worst_z << "\n";
}

TEST(ExecuTorch, EvoProgramMatchesEagerAndKeepsTheSameTokens) {
  std::string dir = env_or_empty("COMPKIT_PTE_CASE");
  if (dir.empty()) GTEST_SKIP() << "COMPKIT_PTE_CASE not set";
  const VectorSet& v = load_vectors(dir);
  if (!v.j["evo"].contains("model")) GTEST_SKIP() << "no EvoComp model in these vectors";
  const auto& m = v.j["evo"]["model"];
  auto vs = m["visual_shape"].get<std::vector<int32_t>>(), ts = m["text_shape"].get<std::vector<int32_t>>();
  size_t nv = static_cast<size_t>(vs[0]) * vs[1], nt = static_cast<size_t>(ts[0]) * ts[1];
  std::vector<float> buf(nv + nt + static_cast<size_t>(ts[0]));
  std::ifstream f(dir + "/" + m["bin"].get<std::string>(), std::ios::binary);
  ASSERT_TRUE(f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size() * sizeof(float))));
  std::vector<int32_t> mask(static_cast<size_t>(ts[0]));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<int32_t>(buf[nv + nt + i]);
  EvoModel model(dir + "/evo.pte");
  auto logits = model.keep_logits(buf.data(), vs[0], vs[1], buf.data() + nv, mask.data(), ts[0], ts[1]);
  auto want = m["keep_logits"].get<std::vector<float>>();
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(double(logits[i]) - want[i]));
  EXPECT_LE(worst, 1e-4);
  for (const auto& [ratio, kept] : m["kept"].items())
    EXPECT_EQ(evo_select(logits.data(), vs[0], 0, std::stod(ratio)), kept.get<std::vector<int32_t>>()) << "ratio " << ratio;
}

TEST(ExecuTorch, ProgramsWithTheWrongSpecAreRejected) {
  std::string dir = env_or_empty("COMPKIT_PTE_CASE");
  if (dir.empty()) GTEST_SKIP() << "COMPKIT_PTE_CASE not set";
  try {
    make_executorch_scorer({dir + "/evo.pte"});
    ADD_FAILURE() << "an EvoComp program was accepted as a MOOSComp scorer";
  } catch (const Error& e) {
    EXPECT_EQ(e.code, COMPKIT_ERR_MODEL_SPEC) << e.what();
  }
  try {
    make_executorch_scorer({dir + "/vectors.json"});
    ADD_FAILURE() << "a JSON file was accepted as a program";
  } catch (const Error& e) {
    EXPECT_EQ(e.code, COMPKIT_ERR_MODEL) << e.what();
  }
}

}  // namespace
}  // namespace compkit::testing
