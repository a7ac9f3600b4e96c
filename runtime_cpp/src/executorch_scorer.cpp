// The model call through ExecuTorch's Module API (runner, Android): one .pte per bucket for MOOSComp,
// one .pte for EvoComp. Each program's input spec is checked against docs/ARTIFACTS.md at load.
#include "executorch_model.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "error.h"

#ifdef COMPKIT_WITH_EXECUTORCH
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#endif

namespace compkit {

#ifdef COMPKIT_WITH_EXECUTORCH
namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::EValue;

std::unique_ptr<Module> load(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error(COMPKIT_ERR_MODEL, "model file not found: " + path);
  auto m = std::make_unique<Module>(path, Module::LoadMode::Mmap);
  if (m->load_method("forward") != executorch::runtime::Error::Ok)
    throw Error(COMPKIT_ERR_MODEL, "cannot load method forward of " + path + ": not an ExecuTorch program, or built "
                                   "with kernels/delegates this library lacks");
  return m;
}

std::vector<int64_t> input_shape(Module& m, size_t i, ScalarType* dtype) {
  auto meta = m.method_meta("forward");
  auto info = meta->input_tensor_meta(i);
  if (!info.ok()) return {};
  *dtype = info->scalar_type();
  return std::vector<int64_t>(info->sizes().begin(), info->sizes().end());
}

std::vector<EValue> run(Module& m, const std::vector<EValue>& inputs, const std::string& path) {
  auto out = m.execute("forward", inputs);
  if (!out.ok()) throw Error(COMPKIT_ERR_MODEL, "running " + path + " failed (ExecuTorch error " +
                                                    std::to_string(static_cast<int>(out.error())) + ")");
  return *out;
}

void copy_floats(const EValue& v, size_t n, std::vector<float>* out, const std::string& what) {
  if (!v.isTensor() || v.toTensor().scalar_type() != ScalarType::Float || static_cast<size_t>(v.toTensor().numel()) < n)
    throw Error(COMPKIT_ERR_MODEL_SPEC, what + " is not a float32 tensor of the input's length");
  const float* p = v.toTensor().const_data_ptr<float>();
  out->assign(p, p + n);
}

class ExecuTorchScorer : public TokenScorer {
 public:
  explicit ExecuTorchScorer(const std::vector<std::string>& paths) {
    if (paths.empty()) throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "pass at least one .pte file");
    for (const auto& path : paths) {
      auto m = load(path);
      auto meta = m->method_meta("forward");
      if (meta->num_inputs() != 2 || meta->num_outputs() < 1 || meta->num_outputs() > 2)
        throw Error(COMPKIT_ERR_MODEL_SPEC, path + " takes " + std::to_string(meta->num_inputs()) + " inputs and gives " +
                                                std::to_string(meta->num_outputs()) + " outputs; a MOOSComp scorer takes "
                                                "input_ids and attention_mask and gives keep_prob (and outlier_z)");
      int64_t length = -1;
      for (size_t i = 0; i < 2; ++i) {
        ScalarType dtype;
        auto shape = input_shape(*m, i, &dtype);
        if (shape.size() != 2 || shape[0] != 1 || dtype != ScalarType::Int || (length >= 0 && shape[1] != length))
          throw Error(COMPKIT_ERR_MODEL_SPEC, path + ": input " + std::to_string(i) + " is not int32 [1, L] (export the "
                                                  "scorer with export.build: int32 ids and mask at a fixed bucket)");
        length = shape[1];
      }
      bool outlier = meta->num_outputs() == 2;
      if (!models_.empty() && outlier != has_outlier_)
        throw Error(COMPKIT_ERR_MODEL_SPEC, "the .pte files disagree on the outlier_z output: export them together");
      has_outlier_ = outlier;
      if (models_.count(static_cast<int32_t>(length)))
        throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "two .pte files for bucket " + std::to_string(length));
      models_[static_cast<int32_t>(length)] = {path, std::move(m)};
    }
  }
  std::vector<int32_t> seq_lens() const override {
    std::vector<int32_t> out;
    for (const auto& kv : models_) out.push_back(kv.first);
    return out;
  }
  bool has_outlier() const override { return has_outlier_; }
  void score(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask, std::vector<float>* keep_prob,
             std::vector<float>* outlier_z) override {
    auto it = models_.find(static_cast<int32_t>(ids.size()));
    if (it == models_.end()) throw Error(COMPKIT_ERR_MODEL_SPEC, "no .pte for length " + std::to_string(ids.size()));
    const auto n = static_cast<executorch::aten::SizesType>(ids.size());
    std::vector<int32_t> ids_copy(ids), mask_copy(mask);  // from_blob wants mutable memory
    auto ids_t = executorch::extension::from_blob(ids_copy.data(), {1, n}, ScalarType::Int);
    auto mask_t = executorch::extension::from_blob(mask_copy.data(), {1, n}, ScalarType::Int);
    auto out = run(*it->second.module, {EValue(*ids_t), EValue(*mask_t)}, it->second.path);
    copy_floats(out.at(0), ids.size(), keep_prob, it->second.path + " output keep_prob");
    if (has_outlier_) copy_floats(out.at(1), ids.size(), outlier_z, it->second.path + " output outlier_z");
    else outlier_z->clear();
  }

 private:
  struct Loaded {
    std::string path;
    std::unique_ptr<Module> module;
  };
  std::map<int32_t, Loaded> models_;
  bool has_outlier_ = false;
};

}  // namespace

std::unique_ptr<TokenScorer> make_executorch_scorer(const std::vector<std::string>& pte_paths) {
  return std::make_unique<ExecuTorchScorer>(pte_paths);
}

struct EvoModel::Impl {
  std::string path;
  std::unique_ptr<Module> module;
  std::vector<int64_t> visual, text, mask;
  ScalarType mask_dtype = ScalarType::Float;
};

EvoModel::EvoModel(const std::string& pte_path) : impl_(std::make_unique<Impl>()) {
  impl_->path = pte_path;
  impl_->module = load(pte_path);
  auto meta = impl_->module->method_meta("forward");
  if (meta->num_inputs() != 3 || meta->num_outputs() != 1)
    throw Error(COMPKIT_ERR_MODEL_SPEC, pte_path + " is not an EvoComp scorer (visual_tokens, text_embeds, text_mask -> keep_logits)");
  ScalarType dt;
  impl_->visual = input_shape(*impl_->module, 0, &dt);
  bool ok = impl_->visual.size() == 3 && dt == ScalarType::Float;
  impl_->text = input_shape(*impl_->module, 1, &dt);
  ok = ok && impl_->text.size() == 3 && dt == ScalarType::Float;
  impl_->mask = input_shape(*impl_->module, 2, &impl_->mask_dtype);
  ok = ok && impl_->mask.size() == 2 && (impl_->mask_dtype == ScalarType::Float || impl_->mask_dtype == ScalarType::Int);
  if (!ok) throw Error(COMPKIT_ERR_MODEL_SPEC, pte_path + ": inputs are not visual_tokens [1,N,Dv], text_embeds [1,T,Dt] float32, text_mask [1,T]");
}

EvoModel::~EvoModel() = default;

std::vector<float> EvoModel::keep_logits(const float* visual, int32_t n, int32_t dv, const float* text, const int32_t* mask,
                                         int32_t t, int32_t dt) {
  const Impl& m = *impl_;
  if (n != m.visual[1] || dv != m.visual[2] || t != m.text[1] || dt != m.text[2])
    throw Error(COMPKIT_ERR_MODEL_SPEC, "the EvoComp model takes N=" + std::to_string(m.visual[1]) + " Dv=" + std::to_string(m.visual[2]) +
                                            " T=" + std::to_string(m.text[1]) + " Dt=" + std::to_string(m.text[2]) + "; got N=" +
                                            std::to_string(n) + " Dv=" + std::to_string(dv) + " T=" + std::to_string(t) + " Dt=" + std::to_string(dt));
  std::vector<float> v(visual, visual + static_cast<size_t>(n) * dv), e(text, text + static_cast<size_t>(t) * dt), mf(t);
  std::vector<int32_t> mi(mask, mask + t);
  for (int32_t i = 0; i < t; ++i) mf[i] = static_cast<float>(mask[i]);
  auto vt = executorch::extension::from_blob(v.data(), {1, n, dv}, ScalarType::Float);
  auto et = executorch::extension::from_blob(e.data(), {1, t, dt}, ScalarType::Float);
  auto mt = m.mask_dtype == ScalarType::Int ? executorch::extension::from_blob(mi.data(), {1, t}, ScalarType::Int)
                                            : executorch::extension::from_blob(mf.data(), {1, t}, ScalarType::Float);
  auto out = run(*m.module, {EValue(*vt), EValue(*et), EValue(*mt)}, m.path);
  std::vector<float> logits;
  copy_floats(out.at(0), static_cast<size_t>(n), &logits, m.path + " output keep_logits");
  return logits;
}

#else  // built without ExecuTorch: the callback route still works

std::unique_ptr<TokenScorer> make_executorch_scorer(const std::vector<std::string>&) {
  throw Error(COMPKIT_ERR_UNSUPPORTED, "this compkit library was built without ExecuTorch: use the callback scorer");
}
struct EvoModel::Impl {};
EvoModel::EvoModel(const std::string&) {
  throw Error(COMPKIT_ERR_UNSUPPORTED, "this compkit library was built without ExecuTorch");
}
EvoModel::~EvoModel() = default;
std::vector<float> EvoModel::keep_logits(const float*, int32_t, int32_t, const float*, const int32_t*, int32_t, int32_t) {
  return {};
}

#endif

}  // namespace compkit
