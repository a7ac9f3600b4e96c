// Loading a .pte method, making its inputs, calling it and saving its outputs: the parts every
// runner mode shares (the benchmark mode in runner.cpp; later a pipeline mode over runtime_cpp/).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

namespace compkit {

using executorch::aten::ScalarType;
using executorch::runtime::EValue;

// Every error the runner reports: one line, and the process exit code (1 runtime, 2 usage).
struct Failure : std::runtime_error {
  int code;
  explicit Failure(const std::string& what, int code = 1) : std::runtime_error(what), code(code) {}
};

// Routes ExecuTorch's log through the runner so its reason for a failure reaches the one-line
// error message. verbose also echoes every log line to stderr.
void install_et_log_capture(bool verbose);

struct LoadedModel {
  std::unique_ptr<executorch::extension::Module> module;
  std::string path, method;
  double load_ms = 0;  // program + method load, delegate init included
};

// with_etdump attaches an ETDump event tracer (Failure when the build has no ETDump library).
LoadedModel load_model(const std::string& path, const std::string& method, bool with_etdump);

// How to fill a method's inputs: keys are input indices or tensor names stored in the .pte.
struct InputSpec {
  std::vector<std::pair<std::string, std::string>> files;   // key -> raw little-endian file
  std::vector<std::pair<std::string, std::string>> shapes;  // key -> "1x128" (dynamic dims)
  std::vector<std::string> ones;                            // keys filled with ones (masks)
  int vocab = 1000;                                         // random ids are drawn from [0, vocab)
  uint64_t seed = 0;
};

struct InputSet {
  std::vector<std::vector<uint8_t>> buffers;  // owns the bytes the tensors point at
  std::vector<executorch::extension::TensorPtr> tensors;
  std::vector<EValue> values;
  std::string json;  // the report's "inputs" field
};

InputSet make_inputs(LoadedModel& model, const InputSpec& spec);

// The one place a model runs.
std::vector<EValue> call_model(LoadedModel& model, const std::vector<EValue>& inputs);

// The report's "outputs" field: index, shape and dtype of each output.
std::string describe_outputs(const std::vector<EValue>& outputs);
// Each tensor output as output_<i>.bin (raw, contiguous) plus output_<i>.json {shape, dtype}.
void dump_outputs(const std::vector<EValue>& outputs, const std::string& dir);
void write_etdump(LoadedModel& model, const std::string& path);

// Same statistics as ExecuTorch's benchmark app: the mean, the mean of the middle 80%, and the median.
struct LatencyStats {
  double avg = 0, trimmean = 0, median = 0;
};
LatencyStats latency_stats(const std::vector<double>& ms);
double median_of(std::vector<double> v);
long peak_rss_kb();
// CPU time of the whole process (every thread). On a shared machine it grows less than wall time, so speedups
// from it are the load-robust cross-check bench_device.e2e reports beside wall-time speedups.
double process_cpu_ms();

std::string dtype_name(ScalarType t);  // torch/numpy spelling: float32, int64, ...
std::string json_str(const std::string& s);
std::string json_num(double x);
std::string json_nums(const std::vector<double>& xs);
template <typename Seq>
std::string json_ints(const Seq& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? "," : "") + std::to_string(xs[i]);
  return s + "]";
}

}  // namespace compkit
