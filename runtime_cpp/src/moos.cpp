// See moos.h. Each step names the Python function it mirrors; quirks kept on purpose say "as LLMLingua".
#include "moos.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "error.h"
#include "numpy_compat.h"
#include "unicode.h"

namespace compkit {

namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // "▁"
const std::string kPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // Python's string.punctuation
constexpr float kOutlierZClip = 3.0f;

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) out += s.substr(pos, hit - pos) + to;
  return out + s.substr(pos);
}

bool has_digit(const std::string& s) {  // Python re's \d on str: any Unicode decimal digit
  std::u32string cps;
  utf8_decode(s, &cps);
  return std::any_of(cps.begin(), cps.end(), is_decimal_digit);
}

// moos_words.WordRules
struct Rules {
  std::string family;
  std::vector<std::pair<std::string, std::string>> token_map;  // in insertion order
  std::unordered_set<std::string> force_set, forced_pieces;
  bool force_reserve_digit = false;

  std::string pure(const std::string& t) const {  // str.lstrip strips every leading char of the set
    size_t i = 0;
    if (family == "wordpiece") {
      while (i < t.size() && t[i] == '#') ++i;
    } else {
      while (t.compare(i, kMetaspace.size(), kMetaspace) == 0) i += kMetaspace.size();
    }
    return t.substr(i);
  }
  bool begins_word(const std::string& t) const {
    if (family == "wordpiece") return forced_pieces.count(pure(t)) || t.compare(0, 2, "##") != 0;
    // `in string.punctuation` is a substring test ("()" counts): as LLMLingua
    return kPunctuation.find(t) != std::string::npos || forced_pieces.count(t) || t.compare(0, kMetaspace.size(), kMetaspace) == 0;
  }
  std::string restore(std::string t) const {
    for (const auto& [original, stand_in] : token_map) t = replace_all(std::move(t), stand_in, original);
    return t;
  }
};

struct WindowWords {
  std::vector<std::string> words;
  std::vector<float> piece_score;  // force/digit overrides applied
  std::vector<size_t> starts;
  std::vector<uint8_t> forced;
};

// moos_words.merge_window
WindowWords merge_window(const Tokenizer& tok, const WindowTrace& w, const Rules& rules, double outlier_weight) {
  WindowWords ww;
  std::vector<std::string> toks;
  std::vector<float> z;
  for (size_t i = 0; i < w.ids.size(); ++i) {
    const std::string& t = tok.id_to_token(w.ids[i]);
    if (tok.special_tokens().count(t)) continue;
    toks.push_back(t);
    ww.piece_score.push_back(w.keep_prob[i]);
    if (!w.outlier_z.empty()) z.push_back(w.outlier_z[i]);
  }
  if (toks.empty()) return ww;
  const float top = static_cast<float>(1.0 + outlier_weight);
  if (outlier_weight > 0 && !z.empty()) {
    const float weight = static_cast<float>(outlier_weight);
    for (size_t i = 0; i < toks.size(); ++i) {
      float clipped = std::min(std::max(z[i], 0.0f), kOutlierZClip) / kOutlierZClip;
      ww.piece_score[i] = ww.piece_score[i] + weight * clipped;
    }
  }
  ww.forced.assign(toks.size(), 0);
  std::vector<std::string> texts;
  for (size_t i = 0; i < toks.size(); ++i) {
    std::string t = toks[i];
    if (i == 0 || rules.begins_word(t)) {  // LLMLingua would crash on a leading continuation
      ww.starts.push_back(i);
      if (rules.forced_pieces.count(rules.pure(t))) ww.forced[i] = 1;
      t = rules.restore(std::move(t));
      texts.push_back(t);
    } else {
      texts.push_back(rules.pure(t));
    }
    // the digit test sees the restored text of a first piece and the raw text of a later one: as LLMLingua
    if (rules.force_reserve_digit && has_digit(t)) ww.forced[i] = 1;
  }
  for (size_t i = 0; i < toks.size(); ++i)
    if (ww.forced[i]) ww.piece_score[i] = top;
  for (size_t k = 0; k < ww.starts.size(); ++k) {
    size_t end = k + 1 < ww.starts.size() ? ww.starts[k + 1] : toks.size();
    std::string word;
    for (size_t i = ww.starts[k]; i < end; ++i) word += texts[i];
    ww.words.push_back(std::move(word));
  }
  return ww;
}

// Word scores with numpy's dtype: float64 when LLMLingua's list held a Python float (some word built
// only from forced pieces), else float32. Values are stored as doubles either way (exact for float32).
struct Scores {
  std::vector<double> v;
  bool is64 = false;
};

// moos_words.word_scores
Scores word_scores(const WindowWords& ww, const std::string& token_to_word) {
  Scores s;
  const size_t n = ww.starts.size();
  for (size_t k = 0; k < n; ++k) {
    size_t a = ww.starts[k], b = k + 1 < n ? ww.starts[k + 1] : ww.piece_score.size();
    if (token_to_word == "mean") {
      float sum = segment_sum(ww.piece_score.data() + a, b - a);
      s.v.push_back(static_cast<double>(sum / static_cast<float>(b - a)));
      bool all_forced = true;
      for (size_t i = a; i < b; ++i) all_forced = all_forced && ww.forced[i];
      s.is64 = s.is64 || all_forced;
    } else {
      s.v.push_back(static_cast<double>(ww.piece_score[a]));
      s.is64 = s.is64 || ww.forced[a];
    }
  }
  return s;
}

double percentile_as(const std::vector<double>& v, int q, bool is64) {
  if (is64) return percentile<double>(v, q);
  return static_cast<double>(percentile<float>(std::vector<float>(v.begin(), v.end()), q));
}

// moos_words.keep_words
std::vector<uint8_t> keep_words(const WindowWords& ww, Scores s, const std::vector<int32_t>& counts, double reduce_rate,
                                const Rules& rules, bool drop_consecutive, double top) {
  if (drop_consecutive) {
    const double first = percentile_as(s.v, static_cast<int>(100 * reduce_rate), s.is64);
    bool between = false;
    std::optional<std::string> prev;
    for (size_t i = 0; i < ww.words.size(); ++i) {
      const std::string& w = ww.words[i];
      if (rules.force_set.count(w)) {
        if (between) {
          between = false;
        } else if (prev && *prev == w) {
          s.is64 = true;  // LLMLingua stores a Python 0.0 here
          s.v[i] = 0.0;
        }
        prev = w;
      } else {
        between = between || s.v[i] > first;
      }
    }
  }
  std::vector<double> repeated;
  for (size_t i = 0; i < s.v.size(); ++i)
    for (int32_t c = 0; c < counts[i]; ++c) repeated.push_back(s.v[i]);
  std::vector<uint8_t> labels(s.v.size(), 0);
  if (repeated.empty()) return labels;
  const double threshold = percentile_as(repeated, static_cast<int>(100 * reduce_rate + 1), s.is64);
  // numpy compares a float32 threshold with the Python float `top` in float32 (NEP 50)
  const bool at_top = s.is64 ? threshold == top : static_cast<float>(threshold) == static_cast<float>(top);
  for (size_t i = 0; i < s.v.size(); ++i) labels[i] = s.v[i] > threshold || (at_top && s.v[i] == threshold);
  if (drop_consecutive) {
    std::optional<std::string> last;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (!labels[i]) continue;
      const std::string& w = ww.words[i];
      if (rules.force_set.count(w) && last && *last == w) labels[i] = 0;
      else last = w;
    }
  }
  return labels;
}

// moos_words.chunk_pieces: [start, end) ranges of at most max_len pieces, cut after the last chunk end.
std::vector<std::pair<size_t, size_t>> chunk_pieces(const std::vector<std::string>& pieces,
                                                    const std::unordered_set<std::string>& chunk_end, size_t max_len) {
  std::vector<std::pair<size_t, size_t>> spans;
  const size_t n = pieces.size();
  size_t st = 0;
  while (st < n) {
    if (st + max_len > n - 1) {
      spans.push_back({st, n});
      break;
    }
    size_t ed = st + max_len;
    for (size_t i = ed; i >= st + 1; --i) {
      if (chunk_end.count(pieces[i])) {
        ed = i;
        break;
      }
    }
    spans.push_back({st, ed + 1});
    st = ed + 1;
  }
  return spans;
}

bool is_python_space(char32_t c) { return is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

}  // namespace

FunctionScorer::FunctionScorer(Fn fn, std::vector<int32_t> seq_lens, bool has_outlier)
    : fn_(std::move(fn)), seq_lens_(std::move(seq_lens)), has_outlier_(has_outlier) {
  std::sort(seq_lens_.begin(), seq_lens_.end());
}

void FunctionScorer::score(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* keep_prob,
                           std::vector<float>* outlier_z) {
  keep_prob->assign(ids.size(), 0.0f);
  outlier_z->assign(has_outlier_ ? ids.size() : 0, 0.0f);
  fn_(ids, mask, keep_prob, outlier_z);
}

MoosCompressor::MoosCompressor(std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<TokenScorer> scorer, MoosConfig config)
    : tokenizer_(std::move(tokenizer)), scorer_(std::move(scorer)), config_(config) {
  if (!tokenizer_ || !scorer_) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "MOOSComp needs a tokenizer and a scorer");
  if (config_.outlier_weight < 0 || !std::isfinite(config_.outlier_weight))
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "outlier_weight must be a finite number >= 0 (0 reproduces LLMLingua-2)");
  if (config_.max_seq_len < 3 || config_.max_force_token < 0)
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "max_seq_len must be >= 3 and max_force_token >= 0");
  if (config_.outlier_weight > 0 && !scorer_->has_outlier())
    throw Error(COMPKIT_ERR_MODEL_SPEC, "outlier_weight > 0 needs a model with an outlier_z output: export with the "
                                        "representation outlier on, or use outlier_weight 0");
  for (int32_t i = 0; i < config_.max_force_token; ++i) added_tokens_.push_back("[NEW" + std::to_string(i) + "]");
  tokenizer_->add_special_tokens(added_tokens_);  // as add_force_token_slots: a no-op when present
  auto id = [&](const char* llmlingua, const char* role) {
    std::string name = config_.llmlingua_special ? llmlingua : tokenizer_->special_token(role);
    return tokenizer_->token_to_id(name);
  };
  cls_id_ = id("[CLS]", "cls_token");
  sep_id_ = id("[SEP]", "sep_token");
  pad_id_ = id("[PAD]", "pad_token");
  for (int32_t b : scorer_->seq_lens())
    if (b < 3) throw Error(COMPKIT_ERR_MODEL_SPEC, "the model's sequence length " + std::to_string(b) + " is too short");
}

CompressResult MoosCompressor::compress(std::string_view text, const CompressOptions& opt) const {
  const auto t0 = Clock::now();
  CompressResult r;
  std::u32string cps;
  if (!utf8_decode(text, &cps)) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "text is not valid UTF-8: pass UTF-8 text");
  if (std::all_of(cps.begin(), cps.end(), is_python_space))
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "context is empty: pass the prompt text to compress");
  if (!(opt.rate > 0 && opt.rate <= 1))
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "rate must be in (0, 1] (the fraction of tokens to keep)");
  if (opt.token_to_word != "mean" && opt.token_to_word != "first")
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "token_to_word must be 'mean' or 'first'");
  if (static_cast<int64_t>(opt.force_tokens.size()) > config_.max_force_token)
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "at most " + std::to_string(config_.max_force_token) + " force tokens");
  for (const auto& s : opt.force_tokens)
    if (s.empty() || !utf8_valid(s)) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "force tokens must be non-empty UTF-8 strings");
  for (const auto& s : opt.chunk_end_tokens)
    if (!utf8_valid(s)) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "chunk-end tokens must be UTF-8 strings");

  const Tokenizer& tok = *tokenizer_;
  Rules rules;
  rules.family = tok.family();
  rules.force_reserve_digit = opt.force_reserve_digit;
  for (size_t i = 0; i < opt.force_tokens.size(); ++i) {
    const std::string& t = opt.force_tokens[i];
    rules.force_set.insert(t);
    if (tok.tokenize(t).size() == 1) continue;
    auto it = std::find_if(rules.token_map.begin(), rules.token_map.end(), [&](const auto& p) { return p.first == t; });
    if (it != rules.token_map.end()) it->second = added_tokens_[i];  // a Python dict keeps the first position
    else rules.token_map.push_back({t, added_tokens_[i]});
  }
  rules.forced_pieces = rules.force_set;
  std::unordered_set<std::string> chunk_end(opt.chunk_end_tokens.begin(), opt.chunk_end_tokens.end());
  for (const auto& [original, stand_in] : rules.token_map) {
    rules.forced_pieces.insert(stand_in);
    if (chunk_end.count(original)) chunk_end.insert(stand_in);
  }

  // ---- tokenize: force mapping, chunking, re-tokenizing each chunk (as LLMLingua), [CLS]/[SEP]
  std::string mapped(text);
  for (const auto& [original, stand_in] : rules.token_map) mapped = replace_all(std::move(mapped), original, stand_in);
  const std::vector<std::string> pieces = tok.tokenize(mapped);
  // With no force token rewriting the text, the chunking's pieces are the origin count (as compressors/moos.py
  // counts): one tokenizer pass over the whole prompt fewer.
  r.origin_tokens = static_cast<int32_t>(rules.token_map.empty() ? pieces.size() : tok.encode(text).size());
  std::vector<std::string> chunks;
  for (const auto& [a, b] : chunk_pieces(pieces, chunk_end, static_cast<size_t>(config_.max_seq_len - 2)))
    chunks.push_back(tok.tokens_to_string(std::vector<std::string>(pieces.begin() + a, pieces.begin() + b)));
  for (const auto& c : chunks) {
    WindowTrace w;
    w.ids.push_back(cls_id_);
    for (int32_t id : tok.encode(c)) w.ids.push_back(id);
    w.ids.push_back(sep_id_);
    if (w.ids.size() > static_cast<size_t>(config_.max_seq_len)) w.ids.resize(static_cast<size_t>(config_.max_seq_len));
    r.windows.push_back(std::move(w));
  }
  r.tokenize_ms = ms_since(t0);

  // ---- forward: one call per window at the smallest bucket that holds it
  const auto t1 = Clock::now();
  const std::vector<int32_t> buckets = scorer_->seq_lens();
  for (auto& w : r.windows) {
    size_t n = w.ids.size(), length = n;
    if (!buckets.empty()) {
      auto fit = std::find_if(buckets.begin(), buckets.end(), [&](int32_t b) { return static_cast<size_t>(b) >= n; });
      if (fit == buckets.end())
        throw Error(COMPKIT_ERR_MODEL_SPEC, "a " + std::to_string(n) + "-token window fits no bucket of the model (largest " +
                                                std::to_string(buckets.back()) + "): export a bucket of at least " + std::to_string(n));
      length = static_cast<size_t>(*fit);
    }
    std::vector<int32_t> ids(length, pad_id_), mask(length, 0);
    std::copy(w.ids.begin(), w.ids.end(), ids.begin());
    std::fill(mask.begin(), mask.begin() + static_cast<long>(n), 1);
    scorer_->score(ids, mask, &w.keep_prob, &w.outlier_z);
    if (w.keep_prob.size() < n || (!w.outlier_z.empty() && w.outlier_z.size() < n))
      throw Error(COMPKIT_ERR_MODEL_SPEC, "the model returned fewer scores than tokens");
    w.keep_prob.resize(n);
    if (!w.outlier_z.empty()) w.outlier_z.resize(n);
    if (config_.outlier_weight > 0 && w.outlier_z.empty())
      throw Error(COMPKIT_ERR_MODEL_SPEC, "the model returned no outlier_z: use outlier_weight 0");
  }
  r.forward_ms = ms_since(t1);

  // ---- post-process: words, scores, per-window threshold, text
  const auto t2 = Clock::now();
  double rate = opt.rate;
  if (opt.target_token > 0) rate = std::min(static_cast<double>(opt.target_token) / r.origin_tokens, 1.0);
  const double reduce_rate = std::max(0.0, 1.0 - rate);
  std::unordered_map<std::string, int32_t> count_cache;  // per-word target-LLM token counts
  for (const auto& w : r.windows) {
    WindowWords ww = merge_window(tok, w, rules, config_.outlier_weight);
    std::vector<uint8_t> labels(ww.words.size(), 1);
    if (reduce_rate > 0) {
      std::vector<int32_t> counts;
      for (const auto& word : ww.words) {
        auto it = count_cache.find(word);
        if (it == count_cache.end()) it = count_cache.emplace(word, static_cast<int32_t>(tok.encode(word).size())).first;
        counts.push_back(it->second);
      }
      labels = keep_words(ww, word_scores(ww, opt.token_to_word), counts, reduce_rate, rules, opt.drop_consecutive,
                          1.0 + config_.outlier_weight);
      std::vector<std::string> kept;
      for (size_t i = 0; i < labels.size(); ++i)
        if (labels[i]) kept.push_back(ww.words[i]);
      r.compressed += tok.tokens_to_string(kept);
    }
    r.words.insert(r.words.end(), ww.words.begin(), ww.words.end());
    r.kept.insert(r.kept.end(), labels.begin(), labels.end());
  }
  if (reduce_rate <= 0) {  // nothing to drop: the text comes back whole (words all marked kept)
    for (const auto& c : chunks) r.compressed += rules.restore(c);
  }
  r.compressed_tokens = static_cast<int32_t>(tok.encode(r.compressed).size());
  r.postprocess_ms = ms_since(t2);
  r.total_ms = ms_since(t0);
  return r;
}

int32_t evo_keep_count(int32_t n, int32_t k, double ratio) {
  if (n < 1) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "EvoComp needs at least one visual token");
  if (k > 0) {
    if (k > n) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "k must be in [1, " + std::to_string(n) + "] (the number of tokens)");
    return k;
  }
  if (!std::isfinite(ratio) || ratio < 1)
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "ratio must be a finite number >= 1 (3.0 keeps a third), or pass k > 0");
  double kept = std::floor(static_cast<double>(n) / ratio + 0.5);
  return static_cast<int32_t>(std::max(1.0, std::min(static_cast<double>(n), kept)));
}

std::vector<int32_t> evo_select(const float* scores, int32_t n, int32_t k, double ratio) {
  const int32_t kk = evo_keep_count(n, k, ratio);
  if (!scores) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "scores is NULL");
  for (int32_t i = 0; i < n; ++i)
    if (std::isnan(scores[i])) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "scores contain NaN: check the model's inputs");
  std::vector<int32_t> order(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  // a stable descending sort: among equal scores the lower index comes first (torch.sort stable=True)
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  order.resize(static_cast<size_t>(kk));
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace compkit
