// See model_io.h.
#include "model_io.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <sstream>

#include <executorch/runtime/core/exec_aten/util/scalar_type_util.h>
#include <executorch/runtime/platform/platform.h>
#ifdef COMPKIT_HAVE_ETDUMP
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

namespace compkit {

namespace fs = std::filesystem;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::MethodMeta;
using executorch::runtime::Tag;

// ---------------------------------------------------------------- ExecuTorch log capture
// ExecuTorch logs its own reason for a failure (e.g. "Missing operator: ...") and returns only an
// error code; keep the error lines of the current call so the one-line message can say what went
// wrong. The first one is the cause, the rest is the stack unwinding.
static bool g_verbose = false;  // echo ExecuTorch log lines
static std::vector<std::string> g_et_errors;
static bool g_random_ints = false;  // set when integer inputs were generated (hint for index errors)

static void capture_log(et_timestamp_t, et_pal_log_level_t level, const char*, const char*, size_t,
                        const char* message, size_t length) {
  std::string text(message, length);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (g_verbose) std::cerr << "[et " << static_cast<char>(level) << "] " << text << "\n";
  if (level == kError || level == kFatal) g_et_errors.push_back(text);
  if (level == kFatal) {
    // ExecuTorch aborts right after a fatal log (e.g. a kernel's argument check); say why in one
    // line and exit instead of dumping core.
    std::cerr << "compkit_runner: error: ExecuTorch aborted: " << text << std::endl;
    std::_Exit(1);
  }
}

void install_et_log_capture(bool verbose) {
  g_verbose = verbose;
  executorch::runtime::register_pal(executorch::runtime::PalImpl::create(capture_log, __FILE__));
}

static std::string et_fail(const std::string& what, Error err) {
  std::string msg = what + " failed: " + executorch::runtime::to_string(err);
  if (!g_et_errors.empty()) msg += " (" + g_et_errors.front() + ")";
  bool index_error = false;
  for (auto& e : g_et_errors) index_error |= e.find("embedding") != std::string::npos;
  if (index_error && g_random_ints)
    msg += "; random token ids are drawn from [0, --vocab): pass --vocab below the embedding size";
  return msg;
}

// ---------------------------------------------------------------- dtypes and JSON helpers
std::string dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Long: return "int64";
    case ScalarType::Int: return "int32";
    case ScalarType::Short: return "int16";
    case ScalarType::Char: return "int8";
    case ScalarType::Byte: return "uint8";
    case ScalarType::Bool: return "bool";
    default: return executorch::runtime::toString(t);
  }
}

std::string json_str(const std::string& s) {
  std::ostringstream out;
  out << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out << '\\' << c;
    else if (c < 0x20) out << "\\u" << std::hex << std::setw(4) << std::setfill('0') << int(c) << std::dec;
    else out << c;
  }
  out << '"';
  return out.str();
}

std::string json_num(double x) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(6) << x;  // ms to the nanosecond
  return out.str();
}

std::string json_nums(const std::vector<double>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? "," : "") + json_num(xs[i]);
  return s + "]";
}

// ---------------------------------------------------------------- statistics and process figures
double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

LatencyStats latency_stats(const std::vector<double>& ms) {
  LatencyStats s;
  if (ms.empty()) return s;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  for (double x : ms) s.avg += x;
  s.avg /= ms.size();
  size_t lo = sorted.size() / 10, hi = sorted.size() * 9 / 10;
  if (hi <= lo) lo = 0, hi = sorted.size();
  for (size_t i = lo; i < hi; ++i) s.trimmean += sorted[i];
  s.trimmean /= (hi - lo);
  s.median = median_of(sorted);
  return s;
}

double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Peak resident set: VmHWM where /proc exists (Linux, Android), else getrusage.
long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// ---------------------------------------------------------------- model loading
LoadedModel load_model(const std::string& path, const std::string& method, bool with_etdump) {
  if (!fs::is_regular_file(path)) throw Failure("model file not found: " + path);
  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  if (with_etdump) {
#ifdef COMPKIT_HAVE_ETDUMP
    tracer = std::make_unique<executorch::etdump::ETDumpGen>();
#else
    throw Failure("--etdump: this runner was built without ETDump (the ExecuTorch package has no "
                  "etdump library); rebuild against one that ships it", 2);
#endif
  }
  LoadedModel m;
  m.path = path;
  m.method = method;
  // Load time covers what an app pays before its first call: reading the program and
  // initialising the method (delegate init, i.e. XNNPACK weight packing, happens here).
  g_et_errors.clear();
  auto start = std::chrono::steady_clock::now();
  m.module = std::make_unique<Module>(path, Module::LoadMode::Mmap, std::move(tracer));
  Error err = m.module->load();
  if (err != Error::Ok) throw Failure(et_fail("loading " + path, err));
  auto names = m.module->method_names();
  if (!names.ok()) throw Failure(et_fail("reading method names of " + path, names.error()));
  if (!names->count(method)) {
    std::vector<std::string> sorted(names->begin(), names->end());
    std::sort(sorted.begin(), sorted.end());
    std::string list;
    for (auto& n : sorted) list += (list.empty() ? "" : ", ") + n;
    throw Failure("unknown method '" + method + "' in " + path + " (it has: " + list + ")");
  }
  err = m.module->load_method(method);
  if (err != Error::Ok) throw Failure(et_fail("loading method '" + method + "'", err));
  m.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return m;
}

// ---------------------------------------------------------------- inputs
// Resolves name_or_index against the method's inputs: a number is an index, anything else is
// matched against the tensor names stored in the .pte.
static size_t resolve_input(const std::string& key, const MethodMeta& meta, const std::string& flag) {
  size_t n = meta.num_inputs();
  if (!key.empty() && std::all_of(key.begin(), key.end(), ::isdigit)) {
    size_t idx = std::stoul(key);
    if (idx >= n)
      throw Failure(flag + " " + key + ": method '" + meta.name() + "' has " + std::to_string(n) +
                    " inputs (0.." + std::to_string(n ? n - 1 : 0) + ")");
    return idx;
  }
  for (size_t i = 0; i < n; ++i) {
    auto info = meta.input_tensor_meta(i);
    if (info.ok() && std::string(info->name()) == key) return i;
  }
  throw Failure(flag + " " + key + ": no input of that name; use its index 0.." +
                std::to_string(n ? n - 1 : 0));
}

static std::vector<int32_t> parse_shape(const std::string& s) {
  std::vector<int32_t> dims;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, 'x')) {
    char* end = nullptr;
    long d = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || d < 0) throw Failure("--shape wants dims like 1x128, got '" + s + "'", 2);
    dims.push_back(static_cast<int32_t>(d));
  }
  return dims;
}

template <typename T, typename Gen>
static void fill_typed(uint8_t* data, size_t n, Gen&& gen) {
  T* p = reinterpret_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<T>(gen());
}

// Random data as the benchmark needs it: token ids in [0, vocab) for integer inputs (so an
// embedding lookup stays in range), uniform floats in [-1, 1) otherwise, ones when asked.
static void fill_input(std::vector<uint8_t>& buf, ScalarType t, size_t n, bool ones, int vocab,
                       std::mt19937_64& rng) {
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  auto id = [&](int cap) { return std::uniform_int_distribution<int64_t>(0, std::min(vocab, cap) - 1)(rng); };
  auto fval = [&]() -> float { return ones ? 1.0f : real(rng); };
  switch (t) {
    case ScalarType::Float: fill_typed<float>(buf.data(), n, fval); break;
    case ScalarType::Double: fill_typed<double>(buf.data(), n, fval); break;
    case ScalarType::Half: fill_typed<executorch::aten::Half>(buf.data(), n, fval); break;
    case ScalarType::BFloat16: fill_typed<executorch::aten::BFloat16>(buf.data(), n, fval); break;
    case ScalarType::Long: fill_typed<int64_t>(buf.data(), n, [&] { return ones ? 1 : id(1 << 30); }); break;
    case ScalarType::Int: fill_typed<int32_t>(buf.data(), n, [&] { return ones ? 1 : id(1 << 30); }); break;
    case ScalarType::Short: fill_typed<int16_t>(buf.data(), n, [&] { return ones ? 1 : id(1 << 15); }); break;
    case ScalarType::Char: fill_typed<int8_t>(buf.data(), n, [&] { return ones ? 1 : id(1 << 7); }); break;
    case ScalarType::Byte: fill_typed<uint8_t>(buf.data(), n, [&] { return ones ? 1 : id(1 << 8); }); break;
    case ScalarType::Bool: fill_typed<bool>(buf.data(), n, [] { return true; }); break;  // mask-like
    default: throw Failure(std::string("cannot generate random data of dtype ") + executorch::runtime::toString(t));
  }
}

static std::vector<uint8_t> read_input_file(const std::string& path, size_t expected, size_t index,
                                            const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure("input " + std::to_string(index) + ": cannot open " + path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() != expected)
    throw Failure("input " + std::to_string(index) + ": " + path + " has " + std::to_string(bytes.size()) +
                  " bytes but the method expects " + std::to_string(expected) + " (" + what +
                  "); fix the file or pass --shape " + std::to_string(index) + "=AxB for a dynamic dim");
  return bytes;
}

InputSet make_inputs(LoadedModel& model, const InputSpec& spec) {
  auto meta = model.module->method_meta(model.method);
  if (!meta.ok()) throw Failure(et_fail("reading metadata of '" + model.method + "'", meta.error()));
  size_t n = meta->num_inputs();
  std::vector<std::string> files(n), shapes(n);
  std::vector<bool> ones(n, false);
  for (auto& [k, v] : spec.files) files[resolve_input(k, *meta, "--input")] = v;
  for (auto& [k, v] : spec.shapes) shapes[resolve_input(k, *meta, "--shape")] = v;
  for (auto& k : spec.ones) ones[resolve_input(k, *meta, "--ones")] = true;

  std::mt19937_64 rng(spec.seed);
  InputSet set;
  set.buffers.reserve(n);
  set.json = "[";
  for (size_t i = 0; i < n; ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok()) throw Failure(et_fail("reading input " + std::to_string(i) + " tag", tag.error()));
    if (*tag == Tag::None) {  // an optional argument exported as None
      set.values.emplace_back();
      continue;
    }
    if (*tag != Tag::Tensor)
      throw Failure("input " + std::to_string(i) + " of '" + model.method + "' is a " +
                    executorch::runtime::tag_to_string(*tag) + ", not a tensor; the runner feeds tensors only");
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) throw Failure(et_fail("reading input " + std::to_string(i) + " metadata", info.error()));
    ScalarType dtype = info->scalar_type();
    std::vector<int32_t> sizes(info->sizes().begin(), info->sizes().end());
    if (!shapes[i].empty()) {
      auto want = parse_shape(shapes[i]);
      if (want.size() != sizes.size())
        throw Failure("--shape " + std::to_string(i) + ": the input has " + std::to_string(sizes.size()) +
                      " dims, got " + std::to_string(want.size()));
      sizes = want;
    }
    size_t numel = 1;
    for (auto d : sizes) numel *= static_cast<size_t>(d);
    size_t nbytes = numel * executorch::runtime::elementSize(dtype);
    std::string source = files[i].empty() ? (ones[i] ? "ones" : "random") : "file";
    if (!files[i].empty()) {
      set.buffers.push_back(read_input_file(files[i], nbytes, i, json_ints(sizes) + " " + dtype_name(dtype)));
    } else {
      set.buffers.emplace_back(std::max<size_t>(nbytes, 1));
      fill_input(set.buffers.back(), dtype, numel, ones[i], spec.vocab, rng);
      g_random_ints |= !ones[i] && executorch::runtime::isIntegralType(dtype, false);
    }
    set.tensors.push_back(executorch::extension::from_blob(
        set.buffers.back().data(), std::vector<executorch::aten::SizesType>(sizes.begin(), sizes.end()), dtype));
    set.values.emplace_back(*set.tensors.back());
    set.json += std::string(set.json.size() > 1 ? "," : "") + "{\"index\":" + std::to_string(i) +
                ",\"name\":" + json_str(std::string(info->name())) + ",\"shape\":" + json_ints(sizes) +
                ",\"dtype\":" + json_str(dtype_name(dtype)) + ",\"source\":" + json_str(source) + "}";
  }
  set.json += "]";
  return set;
}

// ---------------------------------------------------------------- the model call
// The one place the model runs; a pipeline mode calls this per stage.
std::vector<EValue> call_model(LoadedModel& m, const std::vector<EValue>& inputs) {
  g_et_errors.clear();
  auto out = m.module->execute(m.method, inputs);
  if (!out.ok()) throw Failure(et_fail("running '" + m.method + "'", out.error()));
  return std::move(*out);
}

// ---------------------------------------------------------------- outputs
std::string describe_outputs(const std::vector<EValue>& outs) {
  std::string s = "[";
  for (size_t i = 0; i < outs.size(); ++i) {
    s += i ? "," : "";
    s += "{\"index\":" + std::to_string(i);
    if (outs[i].isTensor()) {
      const auto& t = outs[i].toTensor();
      s += ",\"shape\":" + json_ints(std::vector<int64_t>(t.sizes().begin(), t.sizes().end())) +
           ",\"dtype\":" + json_str(dtype_name(t.scalar_type()));
    } else {
      s += ",\"type\":" + json_str(executorch::runtime::tag_to_string(outs[i].tag));
    }
    s += "}";
  }
  return s + "]";
}

static void write_atomically(const fs::path& path, const void* data, size_t size) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) throw Failure("cannot write " + tmp.string());
  }
  fs::rename(tmp, path);
}

// Each tensor output as output_<i>.bin (raw little-endian, contiguous) plus output_<i>.json.
void dump_outputs(const std::vector<EValue>& outs, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Failure("--output-dir: cannot create " + dir + ": " + ec.message());
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].isTensor()) continue;
    const auto& t = outs[i].toTensor();
    std::string stem = (fs::path(dir) / ("output_" + std::to_string(i))).string();
    write_atomically(stem + ".bin", t.const_data_ptr(), t.nbytes());
    std::string meta = "{\"shape\":" + json_ints(std::vector<int64_t>(t.sizes().begin(), t.sizes().end())) +
                       ",\"dtype\":" + json_str(dtype_name(t.scalar_type())) + "}\n";
    write_atomically(stem + ".json", meta.data(), meta.size());
  }
}

void write_etdump(LoadedModel& m, const std::string& path) {
#ifdef COMPKIT_HAVE_ETDUMP
  auto* gen = static_cast<executorch::etdump::ETDumpGen*>(m.module->event_tracer());
  executorch::etdump::ETDumpResult result = gen->get_etdump_data();
  if (result.buf == nullptr || result.size == 0) throw Failure("ETDump is empty: nothing was recorded");
  try {
    write_atomically(path, result.buf, result.size);
  } catch (...) {
    free(result.buf);
    throw;
  }
  free(result.buf);
#else
  (void)m;
  (void)path;
#endif
}


}  // namespace compkit
