// MOOSComp / LLMLingua-2 compression, step for step as compressors/moos.py and moos_words.py.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer.h"

namespace compkit {

// The model call: one window [1, L] in, keep_prob (and outlier_z) [L] out.
class TokenScorer {
 public:
  virtual ~TokenScorer() = default;
  // The fixed lengths the model accepts, ascending; empty when any length is fine.
  virtual std::vector<int32_t> seq_lens() const = 0;
  virtual bool has_outlier() const = 0;
  // ids and mask have the same length (a bucket, or the window's own length); fills keep_prob and,
  // when has_outlier(), outlier_z with that many values. Throws compkit::Error on failure.
  virtual void score(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* keep_prob,
                     std::vector<float>* outlier_z) = 0;
};

// A scorer over a plain function (the C API's callback, CoreML on iOS, tests' recorded outputs).
class FunctionScorer : public TokenScorer {
 public:
  using Fn = std::function<void(const std::vector<int32_t>&, const std::vector<int32_t>&, std::vector<float>*,
                                std::vector<float>*)>;
  FunctionScorer(Fn fn, std::vector<int32_t> seq_lens, bool has_outlier);
  std::vector<int32_t> seq_lens() const override { return seq_lens_; }
  bool has_outlier() const override { return has_outlier_; }
  void score(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* keep_prob,
             std::vector<float>* outlier_z) override;

 private:
  Fn fn_;
  std::vector<int32_t> seq_lens_;
  bool has_outlier_;
};

// One ExecuTorch .pte per bucket (executorch_scorer.cpp; throws COMPKIT_ERR_UNSUPPORTED when the
// library was built without ExecuTorch).
std::unique_ptr<TokenScorer> make_executorch_scorer(const std::vector<std::string>& pte_paths);

struct MoosConfig {
  double outlier_weight = 0.0;  // 0: LLMLingua-2 exactly (a double, as Python's float)
  int32_t max_seq_len = 512;
  int32_t max_force_token = 100;
  bool llmlingua_special = true;  // feed "[CLS]"/"[SEP]"/"[PAD]" as LLMLingua does, even to XLM-R
};

struct CompressOptions {
  double rate = 0.5;
  int32_t target_token = -1;
  std::vector<std::string> force_tokens;
  bool force_reserve_digit = false;
  bool drop_consecutive = false;
  std::vector<std::string> chunk_end_tokens{".", "\n"};
  std::string token_to_word = "mean";
};

struct WindowTrace {  // what the model saw and said, for parity checks
  std::vector<int32_t> ids;
  std::vector<float> keep_prob, outlier_z;
};

struct CompressResult {
  std::string compressed;
  std::vector<std::string> words;
  std::vector<uint8_t> kept;
  int32_t origin_tokens = 0, compressed_tokens = 0;
  std::vector<WindowTrace> windows;
  double tokenize_ms = 0, forward_ms = 0, postprocess_ms = 0, total_ms = 0;
};

class MoosCompressor {
 public:
  MoosCompressor(std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<TokenScorer> scorer, MoosConfig config = {});
  CompressResult compress(std::string_view text, const CompressOptions& options) const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<TokenScorer> scorer_;
  MoosConfig config_;
  std::vector<std::string> added_tokens_;
  int32_t cls_id_, sep_id_, pad_id_;
};

// EvoComp's host-side selection (compressors/evo.py keep_count and select).
int32_t evo_keep_count(int32_t n, int32_t k, double ratio);
std::vector<int32_t> evo_select(const float* scores, int32_t n, int32_t k, double ratio);

}  // namespace compkit
