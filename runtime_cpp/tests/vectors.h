// The shared vectors (export/vectors.py) as the tests see them. COMPKIT_VECTORS lists directories
// (':'-separated), each holding vectors.json and moos_tokenizer/. COMPKIT_PTE_CASE names one such
// directory that also holds ExecuTorch programs of the same model (moos_*.pte, evo.pte).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moos.h"

namespace compkit::testing {

struct VectorSet {
  std::string dir, name;
  nlohmann::json j;
  std::string tokenizer_dir() const { return dir + "/moos_tokenizer"; }
};

std::vector<std::string> vector_dirs();        // from COMPKIT_VECTORS
const VectorSet& load_vectors(const std::string& dir);  // parsed once per process
std::string env_or_empty(const char* name);

// A scorer that answers with the recorded probabilities of each window (the real scorer protocol,
// fed by the Python reference's outputs); an unknown window throws.
std::unique_ptr<TokenScorer> replay_scorer(const VectorSet& v);

std::vector<std::string> strings(const nlohmann::json& a);
std::vector<std::string> new_tokens(int n = 100);  // [NEW0]..[NEW{n-1}]

}  // namespace compkit::testing
