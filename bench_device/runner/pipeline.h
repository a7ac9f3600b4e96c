// The runner's pipeline mode: the whole compression as a phone runs it, through runtime_cpp's core,
// with per-stage times (tokenize, forward, post-process, total) for every timed iteration.
//   moos: text file in -> tokenize, window forwards over the bucket .pte files, word selection
//   evo:  visual tokens + question embeddings in -> forward, top-k and gather of the kept tokens
#pragma once

#include <string>
#include <vector>

#include "model_io.h"

namespace compkit {

struct PipelineOptions {
  std::string kind;                // "moos" or "evo"
  std::vector<std::string> models;  // moos: one .pte per bucket; evo: one .pte
  std::string tokenizer, text_file;
  double rate = 0.5;               // moos: fraction of tokens kept
  double outlier_weight = 0.0;     // moos: 0 reproduces LLMLingua-2
  std::vector<std::string> force_tokens;
  double ratio = 3.0;              // evo: keep round(N / ratio) visual tokens
  int keep = 0;                    // evo: > 0 overrides ratio
  InputSpec inputs;                // evo: files, shapes and seed of the model's inputs
  int warmup = 1, iters = 5;
};

// Prints one JSON object on stdout; throws Failure on bad input or a failed model call.
void run_pipeline(const PipelineOptions& o, int threads);

}  // namespace compkit
