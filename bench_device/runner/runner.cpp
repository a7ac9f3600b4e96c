// compkit_runner: time one method of an ExecuTorch .pte and print one JSON object on stdout.
//
//   compkit_runner --model X.pte [--method forward] [--input name_or_index=file.bin ...]
//                  [--shape name_or_index=1x128 ...] [--ones name_or_index ...] [--warmup 3]
//                  [--iters 20] [--threads N] [--seed S] [--vocab 1000] [--etdump out.etdp]
//                  [--output-dir DIR] [--verbose]
//   compkit_runner --pipeline moos --model B128.pte [--model B512.pte ...] --tokenizer DIR
//                  --text-file F [--rate 0.5] [--force TOKEN ...] [--outlier-weight W] [--warmup 1] [--iters 5]
//   compkit_runner --pipeline evo --model evo.pte [--ratio 3 | --keep K] [--input ...] [--seed S]
//
// Field names follow ExecuTorch's benchmark apps ("avg_inference_latency(ms)", ...), so results
// line up with numbers published from those apps. Errors: one line on stderr, exit code 1 (2 for
// bad usage). docs/RUNNER.md has the details.
//
// This file holds the command line and the benchmark mode; model_io.h holds loading, inputs, the
// model call and output dumps; pipeline.h the pipeline mode (the whole compression through
// runtime_cpp/'s core, timed per stage).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <executorch/runtime/platform/runtime.h>

#include "model_io.h"
#include "pipeline.h"

#if __has_include(<executorch/extension/threadpool/threadpool.h>)
#include <executorch/extension/threadpool/threadpool.h>
#else
// The pip wheel ships libexecutorch_threadpool.so but not threadpool.h (it includes pthreadpool.h,
// which is not shipped either). These two members are all --threads needs; the declarations match
// the library's exported symbols.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
#endif

using namespace compkit;

// ---------------------------------------------------------------- options
struct Options {
  std::string model, method = "forward", etdump, output_dir;
  InputSpec inputs;
  int warmup = 3, iters = 20, threads = 0;
  bool verbose = false, warmup_set = false, iters_set = false;
  PipelineOptions pipeline;  // used when pipeline.kind is set
};

static const char* kUsage =
    "usage: compkit_runner --model X.pte [--method forward] [--input name_or_index=file.bin ...]\n"
    "  [--shape name_or_index=1x128 ...] [--ones name_or_index ...] [--warmup 3] [--iters 20]\n"
    "  [--threads N] [--seed S] [--vocab 1000] [--etdump out.etdp] [--output-dir DIR] [--verbose]\n"
    "       compkit_runner --pipeline moos --model B.pte [--model B2.pte ...] --tokenizer DIR --text-file F\n"
    "  [--rate 0.5] [--force TOKEN ...] [--outlier-weight W] [--warmup 1] [--iters 5] [--threads N]\n"
    "       compkit_runner --pipeline evo --model evo.pte [--ratio 3 | --keep K] [--input K=FILE ...]\n"
    "  [--seed S] [--warmup 1] [--iters 5] [--threads N]\n";

static int to_int(const std::string& flag, const std::string& v, int lo) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo || x > 1000000000)
    throw Failure(flag + " wants an integer >= " + std::to_string(lo) + ", got '" + v + "'", 2);
  return static_cast<int>(x);
}

static double to_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x)) throw Failure(flag + " wants a number, got '" + v + "'", 2);
  return x;
}

static std::pair<std::string, std::string> split_kv(const std::string& flag, const std::string& v) {
  auto eq = v.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
    throw Failure(flag + " wants name_or_index=value, got '" + v + "'", 2);
  return {v.substr(0, eq), v.substr(eq + 1)};
}

static Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (flag == "--verbose") {
      o.verbose = true;
      continue;
    }
    if (flag.rfind("--", 0) != 0) throw Failure("unexpected argument '" + flag + "' (flags start with --; see --help)", 2);
    auto eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      value = argv[++i];
    } else {
      throw Failure(flag + " needs a value (see --help)", 2);
    }
    if (flag == "--model") o.pipeline.models.push_back(value), o.model = value;
    else if (flag == "--method") o.method = value;
    else if (flag == "--input") o.inputs.files.push_back(split_kv(flag, value));
    else if (flag == "--shape") o.inputs.shapes.push_back(split_kv(flag, value));
    else if (flag == "--ones") o.inputs.ones.push_back(value);
    else if (flag == "--warmup") o.warmup = to_int(flag, value, 0), o.warmup_set = true;
    else if (flag == "--iters") o.iters = to_int(flag, value, 1), o.iters_set = true;
    else if (flag == "--pipeline") o.pipeline.kind = value;
    else if (flag == "--tokenizer") o.pipeline.tokenizer = value;
    else if (flag == "--text-file") o.pipeline.text_file = value;
    else if (flag == "--rate") o.pipeline.rate = to_double(flag, value);
    else if (flag == "--outlier-weight") o.pipeline.outlier_weight = to_double(flag, value);
    else if (flag == "--force") o.pipeline.force_tokens.push_back(value);
    else if (flag == "--ratio") o.pipeline.ratio = to_double(flag, value);
    else if (flag == "--keep") o.pipeline.keep = to_int(flag, value, 1);
    else if (flag == "--threads") o.threads = to_int(flag, value, 0);
    else if (flag == "--vocab") o.inputs.vocab = to_int(flag, value, 1);
    else if (flag == "--seed") o.inputs.seed = static_cast<uint64_t>(to_int(flag, value, 0));
    else if (flag == "--etdump") o.etdump = value;
    else if (flag == "--output-dir") o.output_dir = value;
    else throw Failure("unknown flag '" + flag + "' (see --help)", 2);
  }
  if (o.model.empty()) throw Failure("--model X.pte is required (see --help)", 2);
  if (o.pipeline.kind.empty()) {
    if (o.pipeline.models.size() > 1) throw Failure("--model given twice: the benchmark mode times one .pte", 2);
  } else {
    // a whole compression is much longer than one forward: fewer calls by default
    o.pipeline.warmup = o.warmup_set ? o.warmup : 1;
    o.pipeline.iters = o.iters_set ? o.iters : 5;
    o.pipeline.inputs = o.inputs;
  }
  return o;
}

// ---------------------------------------------------------------- benchmark mode
static int run_benchmark(const Options& o) {
  namespace tp = executorch::extension::threadpool;
  LoadedModel m = load_model(o.model, o.method, !o.etdump.empty());
  InputSet inputs = make_inputs(m, o.inputs);

  std::vector<EValue> outputs;
  for (int i = 0; i < o.warmup; ++i) outputs = call_model(m, inputs.values);
  std::vector<double> ms, cpu;
  for (int i = 0; i < o.iters; ++i) {
    const double cpu0 = process_cpu_ms();
    auto start = std::chrono::steady_clock::now();
    outputs = call_model(m, inputs.values);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    cpu.push_back(process_cpu_ms() - cpu0);
  }
  if (!o.output_dir.empty()) dump_outputs(outputs, o.output_dir);
  if (!o.etdump.empty()) write_etdump(m, o.etdump);

  LatencyStats stats = latency_stats(ms);

  auto meta = m.module->method_meta(o.method);
  std::string backends = "[";
  for (size_t i = 0; meta.ok() && i < meta->num_backends(); ++i) {
    auto name = meta->get_backend_name(i);
    if (name.ok()) backends += std::string(backends.size() > 1 ? "," : "") + json_str(*name);
  }
  backends += "]";

  std::cout << "{\"model\":" << json_str(o.model) << ",\"method\":" << json_str(o.method)
            << ",\"avg_inference_latency(ms)\":" << json_num(stats.avg)
            << ",\"trimmean_inference_latency(ms)\":" << json_num(stats.trimmean)
            << ",\"median_inference_latency(ms)\":" << json_num(stats.median)
            << ",\"model_load_time(ms)\":" << json_num(m.load_ms) << ",\"peak_rss_kb\":" << peak_rss_kb()
            << ",\"cpu_median_ms\":" << json_num(median_of(cpu)) << ",\"iterations_ms\":" << json_nums(ms)
            << ",\"warmup\":" << o.warmup << ",\"iters\":" << o.iters
            << ",\"threads\":" << tp::get_threadpool()->get_thread_count() << ",\"backends\":" << backends
            << ",\"inputs\":" << inputs.json << ",\"outputs\":" << describe_outputs(outputs)
            << ",\"etdump\":" << (o.etdump.empty() ? "null" : json_str(o.etdump)) << "}" << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  try {
    Options options = parse_args(argc, argv);
    install_et_log_capture(options.verbose);
    executorch::runtime::runtime_init();
    namespace tp = executorch::extension::threadpool;
    // Before loading: XNNPACK picks up the pool when the method is initialised.
    if (options.threads > 0) tp::get_threadpool()->_unsafe_reset_threadpool(static_cast<uint32_t>(options.threads));
    if (!options.pipeline.kind.empty()) {
      run_pipeline(options.pipeline, static_cast<int>(tp::get_threadpool()->get_thread_count()));
      return 0;
    }
    return run_benchmark(options);
  } catch (const Failure& f) {
    std::cerr << "compkit_runner: error: " << f.what() << std::endl;
    return f.code;
  } catch (const std::exception& e) {
    std::cerr << "compkit_runner: error: " << e.what() << std::endl;
    return 1;
  }
}

