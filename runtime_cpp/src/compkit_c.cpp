// The C API (include/compkit.h): every C++ exception becomes a status code and a one-line message.
#include "compkit.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "error.h"
#include "executorch_model.h"
#include "moos.h"

struct compkit_moos {
  std::unique_ptr<compkit::MoosCompressor> impl;
};

struct compkit_evo {
  std::unique_ptr<compkit::EvoModel> impl;
};

namespace {

void set_error(char* err, size_t err_len, const std::string& msg) {
  if (!err || err_len == 0) return;
  size_t n = std::min(msg.size(), err_len - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// Runs body; maps exceptions to (status, message).
template <typename F>
compkit_status guarded(char* err, size_t err_len, F&& body) {
  set_error(err, err_len, "");
  try {
    body();
    return COMPKIT_OK;
  } catch (const compkit::Error& e) {
    set_error(err, err_len, e.what());
    return e.code;
  } catch (const std::bad_alloc&) {
    set_error(err, err_len, "out of memory");
    return COMPKIT_ERR_INTERNAL;
  } catch (const std::exception& e) {
    set_error(err, err_len, std::string("internal error: ") + e.what());
    return COMPKIT_ERR_INTERNAL;
  }
}

void require(bool ok, const char* what) {
  if (!ok) throw compkit::Error(COMPKIT_ERR_INVALID_ARGUMENT, what);
}

compkit::MoosConfig to_config(const compkit_moos_config* c) {
  compkit::MoosConfig cfg;
  if (c) {
    cfg.outlier_weight = c->outlier_weight;
    cfg.max_seq_len = c->max_seq_len;
    cfg.max_force_token = c->max_force_token;
    cfg.llmlingua_special = c->model_special_tokens == 0;
  }
  return cfg;
}

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

}  // namespace

extern "C" {

compkit_moos_config compkit_moos_default_config(void) {
  compkit_moos_config c;
  c.outlier_weight = 0.0;
  c.max_seq_len = 512;
  c.max_force_token = 100;
  c.model_special_tokens = 0;
  return c;
}

compkit_moos_options compkit_moos_default_options(void) {
  compkit_moos_options o;
  std::memset(&o, 0, sizeof o);
  o.rate = 0.5;
  o.target_token = -1;
  return o;
}

compkit_status compkit_moos_create_pte(const char* tokenizer_dir, const char* const* pte_paths, int32_t n_paths,
                                       const compkit_moos_config* config, compkit_moos** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(tokenizer_dir && out && pte_paths && n_paths > 0, "pass a tokenizer folder, at least one .pte path and an out pointer");
    *out = nullptr;
    std::vector<std::string> paths;
    for (int32_t i = 0; i < n_paths; ++i) {
      require(pte_paths[i] != nullptr, "a .pte path is NULL");
      paths.emplace_back(pte_paths[i]);
    }
    auto tok = compkit::Tokenizer::from_dir(tokenizer_dir);
    auto scorer = compkit::make_executorch_scorer(paths);
    auto h = std::make_unique<compkit_moos>();
    h->impl = std::make_unique<compkit::MoosCompressor>(std::move(tok), std::move(scorer), to_config(config));
    *out = h.release();
  });
}

compkit_status compkit_moos_create_callback(const char* tokenizer_dir, const int32_t* seq_lens, int32_t n_seq_lens,
                                            int32_t has_outlier, compkit_score_fn fn, void* user,
                                            const compkit_moos_config* config, compkit_moos** out, char* err,
                                            size_t err_len) {
  return guarded(err, err_len, [&] {
    require(tokenizer_dir && out && fn, "pass a tokenizer folder, a score callback and an out pointer");
    require(n_seq_lens == 0 || seq_lens, "seq_lens is NULL");
    *out = nullptr;
    std::vector<int32_t> lens(seq_lens, seq_lens + (n_seq_lens > 0 ? n_seq_lens : 0));
    auto call = [fn, user](const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* p,
                           std::vector<float>* z) {
      char msg[512] = {0};
      int rc = fn(user, ids.data(), mask.data(), static_cast<int32_t>(ids.size()), p->data(), z->empty() ? nullptr : z->data(),
                  msg, sizeof msg);
      if (rc != 0) throw compkit::Error(COMPKIT_ERR_MODEL, std::string("the score callback failed: ") + (msg[0] ? msg : "no message"));
    };
    auto tok = compkit::Tokenizer::from_dir(tokenizer_dir);
    auto scorer = std::make_unique<compkit::FunctionScorer>(call, lens, has_outlier != 0);
    auto h = std::make_unique<compkit_moos>();
    h->impl = std::make_unique<compkit::MoosCompressor>(std::move(tok), std::move(scorer), to_config(config));
    *out = h.release();
  });
}

void compkit_moos_destroy(compkit_moos* moos) { delete moos; }

compkit_status compkit_moos_compress(compkit_moos* moos, const char* text, const compkit_moos_options* options,
                                     compkit_moos_result** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(moos && text && out, "pass a compressor, a text and an out pointer");
    *out = nullptr;
    compkit_moos_options o = options ? *options : compkit_moos_default_options();
    compkit::CompressOptions opt;
    opt.rate = o.rate;
    opt.target_token = o.target_token;
    require(o.n_force_tokens >= 0 && (o.n_force_tokens == 0 || o.force_tokens), "force_tokens is NULL");
    for (int32_t i = 0; i < o.n_force_tokens; ++i) {
      require(o.force_tokens[i] != nullptr, "a force token is NULL");
      opt.force_tokens.emplace_back(o.force_tokens[i]);
    }
    if (o.chunk_end_tokens) {
      opt.chunk_end_tokens.clear();
      for (int32_t i = 0; i < o.n_chunk_end_tokens; ++i) {
        require(o.chunk_end_tokens[i] != nullptr, "a chunk-end token is NULL");
        opt.chunk_end_tokens.emplace_back(o.chunk_end_tokens[i]);
      }
    }
    opt.force_reserve_digit = o.force_reserve_digit != 0;
    opt.drop_consecutive = o.drop_consecutive != 0;
    opt.token_to_word = o.token_to_word_first ? "first" : "mean";
    compkit::CompressResult r = moos->impl->compress(text, opt);

    auto* res = static_cast<compkit_moos_result*>(std::calloc(1, sizeof(compkit_moos_result)));
    if (!res) throw std::bad_alloc();
    std::unique_ptr<compkit_moos_result, void (*)(compkit_moos_result*)> guard(res, compkit_moos_result_free);
    res->n_words = static_cast<int32_t>(r.words.size());
    res->words = static_cast<char**>(std::calloc(r.words.size() + 1, sizeof(char*)));
    res->kept = static_cast<uint8_t*>(std::calloc(r.words.size() + 1, 1));
    if (!res->words || !res->kept) throw std::bad_alloc();
    for (size_t i = 0; i < r.words.size(); ++i) {
      res->words[i] = dup(r.words[i]);
      res->kept[i] = r.kept[i];
    }
    res->compressed = dup(r.compressed);
    res->origin_tokens = r.origin_tokens;
    res->compressed_tokens = r.compressed_tokens;
    res->n_windows = static_cast<int32_t>(r.windows.size());
    res->tokenize_ms = r.tokenize_ms;
    res->forward_ms = r.forward_ms;
    res->postprocess_ms = r.postprocess_ms;
    res->total_ms = r.total_ms;
    *out = guard.release();
  });
}

void compkit_moos_result_free(compkit_moos_result* r) {
  if (!r) return;
  if (r->words)
    for (int32_t i = 0; i < r->n_words; ++i) std::free(r->words[i]);
  std::free(r->words);
  std::free(r->kept);
  std::free(r->compressed);
  std::free(r);
}

compkit_status compkit_evo_keep_count(int32_t n, int32_t k, double ratio, int32_t* out_k, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(out_k != nullptr, "out_k is NULL");
    *out_k = compkit::evo_keep_count(n, k, ratio);
  });
}

compkit_status compkit_evo_select(const float* scores, int32_t n, int32_t k, double ratio, int32_t* out_indices,
                                  int32_t* out_k, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(scores && out_indices && out_k, "scores, out_indices and out_k must not be NULL");
    auto idx = compkit::evo_select(scores, n, k, ratio);
    std::copy(idx.begin(), idx.end(), out_indices);
    *out_k = static_cast<int32_t>(idx.size());
  });
}

compkit_status compkit_evo_create_pte(const char* pte_path, compkit_evo** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(pte_path && out, "pass a .pte path and an out pointer");
    *out = nullptr;
    auto h = std::make_unique<compkit_evo>();
    h->impl = std::make_unique<compkit::EvoModel>(pte_path);
    *out = h.release();
  });
}

void compkit_evo_destroy(compkit_evo* evo) { delete evo; }

compkit_status compkit_evo_compress(compkit_evo* evo, const float* visual_tokens, int32_t n, int32_t dv,
                                    const float* text_embeds, const int32_t* text_mask, int32_t t, int32_t dt,
                                    int32_t k, double ratio, float* out_tokens, int32_t* out_indices, int32_t* out_k,
                                    double* forward_ms, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    require(evo && visual_tokens && text_embeds && text_mask && out_tokens && out_indices && out_k,
            "evo, inputs and outputs must not be NULL");
    require(n > 0 && dv > 0 && t > 0 && dt > 0, "n, dv, t and dt must be positive");
    auto start = std::chrono::steady_clock::now();
    auto logits = evo->impl->keep_logits(visual_tokens, n, dv, text_embeds, text_mask, t, dt);
    if (forward_ms) *forward_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    auto idx = compkit::evo_select(logits.data(), n, k, ratio);
    for (size_t j = 0; j < idx.size(); ++j) {
      out_indices[j] = idx[j];
      std::memcpy(out_tokens + j * static_cast<size_t>(dv), visual_tokens + static_cast<size_t>(idx[j]) * dv, sizeof(float) * dv);
    }
    *out_k = static_cast<int32_t>(idx.size());
  });
}

}  // extern "C"
