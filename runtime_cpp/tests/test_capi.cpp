// The C API: the callback route gives what the C++ pipeline gives; every bad input is a status + message.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "compkit.h"
#include "vectors.h"

namespace compkit::testing {
namespace {

// A callback in the C calling convention: scores by position, fails on request.
struct CallbackState {
  bool fail = false;
  int calls = 0;
};

int score_cb(void* user, const int32_t* ids, const int32_t* mask, int32_t length, float* p, float* z, char* err, size_t err_len) {
  auto* st = static_cast<CallbackState*>(user);
  ++st->calls;
  if (st->fail) {
    std::snprintf(err, err_len, "device busy");
    return 1;
  }
  for (int32_t i = 0; i < length; ++i) {
    p[i] = mask[i] ? static_cast<float>((ids[i] * 2654435761u) % 1000) / 1000.0f : 0.0f;
    if (z) z[i] = 0.0f;
  }
  return 0;
}

TEST(CApi, CompressThroughACallbackAndFreeEverything) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set";
  const std::string tok = load_vectors(dirs.front()).tokenizer_dir();
  CallbackState st;
  char err[256];
  compkit_moos* m = nullptr;
  compkit_moos_config cfg = compkit_moos_default_config();
  int32_t buckets[] = {128, 512};
  ASSERT_EQ(compkit_moos_create_callback(tok.c_str(), buckets, 2, 0, score_cb, &st, &cfg, &m, err, sizeof err), COMPKIT_OK) << err;
  compkit_moos_options o = compkit_moos_default_options();
  o.rate = 0.33;
  const char* force[] = {"\n", "New York"};
  o.force_tokens = force;
  o.n_force_tokens = 2;
  compkit_moos_result* r = nullptr;
  const char* text = "The meeting in New York moved to Thursday at 10:00.\nBring the Q3 numbers, the slides and the budget.";
  ASSERT_EQ(compkit_moos_compress(m, text, &o, &r, err, sizeof err), COMPKIT_OK) << err;
  EXPECT_GT(st.calls, 0);
  EXPECT_GT(r->n_words, 5);
  int kept = 0;
  std::string rebuilt;
  for (int32_t i = 0; i < r->n_words; ++i) kept += r->kept[i];
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, r->n_words);
  EXPECT_NE(std::string(r->compressed).find("New York"), std::string::npos) << r->compressed;
  EXPECT_LT(r->compressed_tokens, r->origin_tokens);
  EXPECT_GE(r->total_ms, r->tokenize_ms + r->forward_ms);
  compkit_moos_result_free(r);

  // errors: invalid UTF-8, empty text, bad rate, NULLs, a failing callback
  EXPECT_EQ(compkit_moos_compress(m, "caf\xC3", &o, &r, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(err, "UTF-8"), nullptr) << err;
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(compkit_moos_compress(m, "", &o, &r, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(err, "empty"), nullptr) << err;
  o.rate = 0;
  EXPECT_EQ(compkit_moos_compress(m, text, &o, &r, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  o.rate = 0.5;
  EXPECT_EQ(compkit_moos_compress(m, nullptr, &o, &r, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(compkit_moos_compress(nullptr, text, &o, &r, nullptr, 0), COMPKIT_ERR_INVALID_ARGUMENT);
  st.fail = true;
  EXPECT_EQ(compkit_moos_compress(m, text, &o, &r, err, sizeof err), COMPKIT_ERR_MODEL);
  EXPECT_NE(std::strstr(err, "device busy"), nullptr) << err;
  char tiny[8];
  EXPECT_EQ(compkit_moos_compress(m, text, &o, &r, tiny, sizeof tiny), COMPKIT_ERR_MODEL);
  EXPECT_EQ(std::strlen(tiny), 7u);  // truncated, terminated
  compkit_moos_destroy(m);
}

TEST(CApi, CreateFailsCleanly) {
  char err[256];
  compkit_moos* m = reinterpret_cast<compkit_moos*>(0x1);
  CallbackState st;
  EXPECT_EQ(compkit_moos_create_callback("/nonexistent", nullptr, 0, 0, score_cb, &st, nullptr, &m, err, sizeof err),
            COMPKIT_ERR_TOKENIZER);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::strstr(err, "tokenizer.json"), nullptr) << err;
  EXPECT_EQ(compkit_moos_create_callback(nullptr, nullptr, 0, 0, score_cb, &st, nullptr, &m, err, sizeof err),
            COMPKIT_ERR_INVALID_ARGUMENT);
  auto dirs = vector_dirs();
  if (!dirs.empty()) {
    const std::string tok = load_vectors(dirs.front()).tokenizer_dir();
    const char* missing[] = {"/nonexistent/moos.pte"};
    compkit_status s = compkit_moos_create_pte(tok.c_str(), missing, 1, nullptr, &m, err, sizeof err);
    EXPECT_TRUE(s == COMPKIT_ERR_MODEL || s == COMPKIT_ERR_UNSUPPORTED) << err;
    compkit_moos_config cfg = compkit_moos_default_config();
    cfg.outlier_weight = 0.5;  // the callback declares no outlier output
    EXPECT_EQ(compkit_moos_create_callback(tok.c_str(), nullptr, 0, 0, score_cb, &st, &cfg, &m, err, sizeof err),
              COMPKIT_ERR_MODEL_SPEC);
  }
}

TEST(CApi, EvoSelect) {
  float s[] = {0.1f, 0.9f, 0.9f, 0.5f, -1.0f, 0.9f};
  int32_t idx[6], k = 0;
  char err[128];
  ASSERT_EQ(compkit_evo_select(s, 6, 0, 3.0, idx, &k, err, sizeof err), COMPKIT_OK) << err;
  ASSERT_EQ(k, 2);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 2);
  EXPECT_EQ(compkit_evo_select(s, 6, 7, 0, idx, &k, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(compkit_evo_select(nullptr, 6, 1, 0, idx, &k, err, sizeof err), COMPKIT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(compkit_evo_keep_count(576, 0, 3.0, &k, err, sizeof err), COMPKIT_OK);
  EXPECT_EQ(k, 192);
}

TEST(CApi, PteRoute) {
  std::string dir = env_or_empty("COMPKIT_PTE_CASE");
  if (dir.empty()) GTEST_SKIP() << "COMPKIT_PTE_CASE not set";
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind("moos_", 0) == 0 && e.path().extension() == ".pte") paths.push_back(e.path().string());
  std::vector<const char*> cpaths;
  for (const auto& p : paths) cpaths.push_back(p.c_str());
  char err[256];
  compkit_moos* m = nullptr;
  const std::string tok = dir + "/moos_tokenizer";
  ASSERT_EQ(compkit_moos_create_pte(tok.c_str(), cpaths.data(), static_cast<int32_t>(cpaths.size()), nullptr, &m, err, sizeof err),
            COMPKIT_OK) << err;
  compkit_moos_result* r = nullptr;
  ASSERT_EQ(compkit_moos_compress(m, "Bring the Q3 numbers to the meeting in Berlin on Thursday, please.", nullptr, &r, err, sizeof err),
            COMPKIT_OK) << err;
  EXPECT_EQ(r->n_windows, 1);
  EXPECT_GT(r->forward_ms, 0.0);
  compkit_moos_result_free(r);
  compkit_moos_destroy(m);
  compkit_evo* evo = nullptr;
  EXPECT_EQ(compkit_evo_create_pte((dir + "/missing.pte").c_str(), &evo, err, sizeof err), COMPKIT_ERR_MODEL);
  EXPECT_EQ(evo, nullptr);
}

}  // namespace
}  // namespace compkit::testing
