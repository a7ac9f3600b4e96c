// Models run through ExecuTorch (executorch_scorer.cpp): the MOOSComp scorer (moos.h,
// make_executorch_scorer) and the EvoComp scorer below.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moos.h"

namespace compkit {

class EvoModel {
 public:
  explicit EvoModel(const std::string& pte_path);  // checks the input spec (docs/ARTIFACTS.md)
  ~EvoModel();
  // keep_logits [n] for visual tokens [n, dv], text embeddings [t, dt] and their mask [t].
  std::vector<float> keep_logits(const float* visual, int32_t n, int32_t dv, const float* text, const int32_t* mask,
                                 int32_t t, int32_t dt);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace compkit
