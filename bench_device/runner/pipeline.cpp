// The runner's pipeline mode (pipeline.h). MOOSComp runs through runtime_cpp's MoosCompressor, the same
// code the demo apps use, so its stage times are what a phone pays; EvoComp runs the .pte through the
// runner's own model call and runtime_cpp's top-k (compkit's tie rule), then gathers the kept tokens.
#include "pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "error.h"
#include "moos.h"

namespace compkit {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Per-stage times of every timed iteration; the JSON gives each stage's median and all its values.
struct Stages {
  std::vector<std::string> names;
  std::vector<std::vector<double>> ms;
  std::vector<double> cpu;  // process CPU time of each whole run
  explicit Stages(std::vector<std::string> n) : names(std::move(n)), ms(names.size()) {}
  void add(const std::vector<double>& row, double cpu_total) {
    for (size_t i = 0; i < row.size(); ++i) ms[i].push_back(row[i]);
    cpu.push_back(cpu_total);
  }
  std::string json() const {
    std::string median = "{", all = "{";
    for (size_t i = 0; i < names.size(); ++i) {
      median += (i ? "," : "") + json_str(names[i]) + ":" + json_num(median_of(ms[i]));
      all += (i ? "," : "") + json_str(names[i]) + ":" + json_nums(ms[i]);
    }
    const std::vector<double>& total = ms.back();
    LatencyStats s = latency_stats(total);
    return "\"stages_median_ms\":" + median + "},\"stages_ms\":" + all + "},\"avg_inference_latency(ms)\":" +
           json_num(s.avg) + ",\"trimmean_inference_latency(ms)\":" + json_num(s.trimmean) +
           ",\"median_inference_latency(ms)\":" + json_num(s.median) + ",\"iterations_ms\":" + json_nums(total) +
           ",\"cpu_median_ms\":" + json_num(median_of(cpu)) + ",\"cpu_ms\":" + json_nums(cpu);
  }
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Failure("--text-file " + path + ": cannot read it", 2);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void run_moos(const PipelineOptions& o, int threads) {
  if (o.tokenizer.empty() || o.text_file.empty())
    throw Failure("--pipeline moos needs --tokenizer DIR (export.build's moos_tokenizer/) and --text-file FILE", 2);
  if (!(o.rate > 0 && o.rate <= 1)) throw Failure("--rate wants a fraction of tokens kept in (0, 1]", 2);
  const std::string text = read_text(o.text_file);
  CompressOptions opt;
  opt.rate = o.rate;
  opt.force_tokens = o.force_tokens;
  MoosConfig cfg;
  cfg.outlier_weight = o.outlier_weight;

  auto start = Clock::now();
  std::unique_ptr<MoosCompressor> moos;
  try {
    auto scorer = make_executorch_scorer(o.models);
    // windows as long as the largest bucket, as runtime_py does with a build's buckets
    cfg.max_seq_len = std::min(cfg.max_seq_len, scorer->seq_lens().back());
    moos = std::make_unique<MoosCompressor>(Tokenizer::from_dir(o.tokenizer), std::move(scorer), cfg);
  } catch (const Error& e) {
    throw Failure(e.what());
  }
  const double load_ms = ms_since(start);

  Stages stages({"tokenize", "forward", "postprocess", "total"});
  CompressResult r;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    const double cpu0 = process_cpu_ms();
    try {
      r = moos->compress(text, opt);
    } catch (const Error& e) {
      throw Failure(e.what());
    }
    if (i >= o.warmup) stages.add({r.tokenize_ms, r.forward_ms, r.postprocess_ms, r.total_ms}, process_cpu_ms() - cpu0);
  }
  size_t kept = static_cast<size_t>(std::count(r.kept.begin(), r.kept.end(), 1));
  std::string models = "[";
  for (size_t i = 0; i < o.models.size(); ++i) models += (i ? "," : "") + json_str(o.models[i]);
  std::cout << "{\"pipeline\":\"moos\",\"model\":" << models << "],\"tokenizer\":" << json_str(o.tokenizer)
            << ",\"rate\":" << json_num(o.rate) << ",\"outlier_weight\":" << json_num(o.outlier_weight)
            << ",\"origin_tokens\":" << r.origin_tokens << ",\"compressed_tokens\":" << r.compressed_tokens
            << ",\"windows\":" << r.windows.size() << ",\"words\":" << r.words.size() << ",\"kept_words\":" << kept
            << ",\"compressed\":" << json_str(r.compressed) << "," << stages.json()
            << ",\"model_load_time(ms)\":" << json_num(load_ms) << ",\"peak_rss_kb\":" << peak_rss_kb()
            << ",\"warmup\":" << o.warmup << ",\"iters\":" << o.iters << ",\"threads\":" << threads << "}" << std::endl;
}

void run_evo(const PipelineOptions& o, int threads) {
  if (o.models.size() != 1) throw Failure("--pipeline evo takes exactly one --model (the EvoComp .pte)", 2);
  if (o.keep <= 0 && !(std::isfinite(o.ratio) && o.ratio >= 1)) throw Failure("--ratio wants a number >= 1", 2);
  LoadedModel m = load_model(o.models[0], "forward", false);
  auto meta = m.module->method_meta("forward");
  if (!meta.ok() || meta->num_inputs() != 3 || meta->num_outputs() != 1)
    throw Failure(o.models[0] + " is not an EvoComp scorer (visual_tokens, text_embeds, text_mask -> keep_logits)");
  InputSpec spec = o.inputs;
  bool mask_given = false;
  for (const auto& [k, v] : spec.files) mask_given |= (k == "2" || k == "text_mask");
  if (!mask_given) spec.ones.push_back("2");  // a question with no padding
  InputSet in = make_inputs(m, spec);
  const auto& visual = in.tensors.at(0);
  if (visual->dim() != 3 || visual->scalar_type() != ScalarType::Float)
    throw Failure(o.models[0] + ": input 0 is not visual_tokens [1, N, Dv] float32");
  const int32_t n = static_cast<int32_t>(visual->size(1)), dv = static_cast<int32_t>(visual->size(2));
  int32_t k = 0;
  try {
    k = evo_keep_count(n, o.keep, o.ratio);
  } catch (const Error& e) {
    throw Failure(e.what(), 2);
  }
  std::vector<float> kept_tokens(static_cast<size_t>(k) * dv);
  std::vector<int32_t> idx;

  Stages stages({"forward", "postprocess", "total"});
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    const double cpu0 = process_cpu_ms();
    auto t0 = Clock::now();
    auto out = call_model(m, in.values);
    double fwd = ms_since(t0);
    auto t1 = Clock::now();
    const auto& logits = out.at(0).toTensor();
    if (logits.scalar_type() != ScalarType::Float || logits.numel() != n)
      throw Failure(o.models[0] + ": output keep_logits is not float32 with one value per visual token");
    try {
      idx = evo_select(logits.const_data_ptr<float>(), n, k, 0);
    } catch (const Error& e) {
      throw Failure(e.what());
    }
    const float* v = visual->const_data_ptr<float>();
    for (size_t j = 0; j < idx.size(); ++j)
      std::memcpy(&kept_tokens[j * dv], v + static_cast<size_t>(idx[j]) * dv, sizeof(float) * dv);
    double post = ms_since(t1);
    if (i >= o.warmup) stages.add({fwd, post, ms_since(t0)}, process_cpu_ms() - cpu0);
  }
  std::cout << "{\"pipeline\":\"evo\",\"model\":[" << json_str(o.models[0]) << "],\"visual_tokens\":" << n
            << ",\"visual_dim\":" << dv << ",\"kept\":" << k << ",\"ratio\":" << json_num(o.ratio)
            << ",\"kept_indices\":" << json_ints(idx) << "," << stages.json() << ",\"model_load_time(ms)\":"
            << json_num(m.load_ms) << ",\"peak_rss_kb\":" << peak_rss_kb() << ",\"inputs\":" << in.json
            << ",\"warmup\":" << o.warmup << ",\"iters\":" << o.iters << ",\"threads\":" << threads << "}" << std::endl;
}

}  // namespace

void run_pipeline(const PipelineOptions& o, int threads) {
  if (o.models.empty()) throw Failure("--model X.pte is required (see --help)", 2);
  if (o.kind == "moos") run_moos(o, threads);
  else if (o.kind == "evo") run_evo(o, threads);
  else throw Failure("--pipeline wants moos or evo, got '" + o.kind + "'", 2);
}

}  // namespace compkit
