/* compkit's native core, as a C API for JNI (Android) and Swift (iOS).
 *
 * MOOSComp: LLMLingua-2 prompt compression (plus outlier fusion) with the model behind either
 * ExecuTorch .pte files (one per fixed sequence-length bucket) or a callback (e.g. CoreML on iOS).
 * EvoComp: top-k visual-token selection with compkit's tie rule.
 *
 * Every call returns a compkit_status; on failure a one-line message is written to err (when err is
 * not NULL; truncated to err_len). No call aborts on bad input. Objects are not thread-safe: use one
 * compressor per thread. Strings are UTF-8 and NUL-terminated.
 */
#ifndef COMPKIT_H_
#define COMPKIT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum compkit_status {
  COMPKIT_OK = 0,
  COMPKIT_ERR_INVALID_ARGUMENT = 1, /* bad text (invalid UTF-8, empty), rate, option, NULL pointer */
  COMPKIT_ERR_TOKENIZER = 2,        /* tokenizer folder or file missing, corrupt or unsupported */
  COMPKIT_ERR_MODEL = 3,            /* the model failed to load or run (callback error included) */
  COMPKIT_ERR_MODEL_SPEC = 4,       /* the model's inputs/outputs are not what compkit exports */
  COMPKIT_ERR_UNSUPPORTED = 5,      /* the library was built without this feature (e.g. ExecuTorch) */
  COMPKIT_ERR_INTERNAL = 6
} compkit_status;

/* ------------------------------------------------------------------ MOOSComp */
typedef struct compkit_moos compkit_moos;

typedef struct compkit_moos_config {
  double outlier_weight;    /* 0 reproduces LLMLingua-2; > 0 fuses the model's outlier_z (MOOSComp) */
  int32_t max_seq_len;      /* 512: [CLS] + 510 pieces + [SEP] */
  int32_t max_force_token;  /* 100: [NEW0]..[NEW99] */
  int32_t model_special_tokens; /* 0: LLMLingua's [CLS]/[SEP]/[PAD] strings (default); 1: the model's own */
} compkit_moos_config;

compkit_moos_config compkit_moos_default_config(void);

/* The model call: fill keep_prob[length] (and outlier_z[length] when the scorer was declared with
 * outlier output) for one window input_ids/attention_mask [1, length], where length is one of the
 * declared seq_lens (or the window's own length when none were declared). Return 0 on success; on
 * failure return non-zero and optionally write a message to err (err_len bytes). */
typedef int (*compkit_score_fn)(void* user, const int32_t* input_ids, const int32_t* attention_mask,
                                int32_t length, float* keep_prob, float* outlier_z, char* err, size_t err_len);

/* tokenizer_dir: the folder holding tokenizer.json (export.build's moos_tokenizer/).
 * pte_paths: one .pte per bucket (inputs input_ids/attention_mask int32 [1, L]; outputs keep_prob
 * [1, L] float32 and optionally outlier_z). */
compkit_status compkit_moos_create_pte(const char* tokenizer_dir, const char* const* pte_paths, int32_t n_paths,
                                       const compkit_moos_config* config, compkit_moos** out, char* err, size_t err_len);
/* seq_lens may be NULL/0 (any length up to max_seq_len). */
compkit_status compkit_moos_create_callback(const char* tokenizer_dir, const int32_t* seq_lens, int32_t n_seq_lens,
                                            int32_t has_outlier, compkit_score_fn fn, void* user,
                                            const compkit_moos_config* config, compkit_moos** out, char* err,
                                            size_t err_len);
void compkit_moos_destroy(compkit_moos* moos);

typedef struct compkit_moos_options {
  double rate;                        /* fraction of tokens to keep, in (0, 1] */
  int32_t target_token;               /* > 0 overrides rate with target / original tokens */
  const char* const* force_tokens;    /* kept whenever they appear */
  int32_t n_force_tokens;
  int32_t force_reserve_digit;        /* keep every word holding a digit */
  int32_t drop_consecutive;           /* drop a force token repeated with no kept word between */
  const char* const* chunk_end_tokens; /* NULL: ".", "\n" */
  int32_t n_chunk_end_tokens;
  int32_t token_to_word_first;        /* 0: a word scores the mean of its pieces; 1: its first piece */
} compkit_moos_options;

compkit_moos_options compkit_moos_default_options(void);

typedef struct compkit_moos_result {
  char* compressed;        /* the compressed prompt */
  int32_t n_words;
  char** words;            /* the words the threshold ran over, in order */
  uint8_t* kept;           /* 1 kept, 0 dropped, per word */
  int32_t origin_tokens;   /* counted with the compressor's own tokenizer (LLMLingua counts tiktoken) */
  int32_t compressed_tokens;
  int32_t n_windows;       /* model calls */
  double tokenize_ms, forward_ms, postprocess_ms, total_ms;
} compkit_moos_result;

compkit_status compkit_moos_compress(compkit_moos* moos, const char* text, const compkit_moos_options* options,
                                     compkit_moos_result** out, char* err, size_t err_len);
void compkit_moos_result_free(compkit_moos_result* result);

/* ------------------------------------------------------------------ EvoComp */
/* How many of n tokens to keep: k when k > 0, else round(n / ratio) with halves up, at least 1. */
compkit_status compkit_evo_keep_count(int32_t n, int32_t k, double ratio, int32_t* out_k, char* err, size_t err_len);
/* Indices of the k highest scores in original order; ties keep the lower index. out_indices holds
 * compkit_evo_keep_count(n, k, ratio) entries. NaN scores are an error. */
compkit_status compkit_evo_select(const float* scores, int32_t n, int32_t k, double ratio, int32_t* out_indices,
                                  int32_t* out_k, char* err, size_t err_len);

typedef struct compkit_evo compkit_evo;
/* An EvoComp .pte: inputs visual_tokens [1, N, Dv], text_embeds [1, T, Dt] float32, text_mask [1, T]
 * (float32 or int32); output keep_logits [1, N]. */
compkit_status compkit_evo_create_pte(const char* pte_path, compkit_evo** out, char* err, size_t err_len);
void compkit_evo_destroy(compkit_evo* evo);
/* Scores the visual tokens, keeps the top k (see compkit_evo_select) and gathers them:
 * out_tokens [k * dv], out_indices [k]; both sized for n entries by the caller. */
compkit_status compkit_evo_compress(compkit_evo* evo, const float* visual_tokens, int32_t n, int32_t dv,
                                    const float* text_embeds, const int32_t* text_mask, int32_t t, int32_t dt,
                                    int32_t k, double ratio, float* out_tokens, int32_t* out_indices, int32_t* out_k,
                                    double* forward_ms, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* COMPKIT_H_ */
