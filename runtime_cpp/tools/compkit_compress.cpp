// compkit_compress: MOOSComp on a text file through ExecuTorch .pte scorers, with per-stage times.
//
//   compkit_compress --tokenizer DIR --pte FILE [--pte FILE...] --text-file FILE [--rate R]
//                    [--force TOKEN]... [--outlier-weight W] [--repeat N]
//
// Prints one JSON object: the compressed text, token counts and the median per-stage times over
// --repeat runs (after one warm-up). Exit 1 on a runtime error, 2 on a usage error; one-line messages.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <executorch/runtime/platform/platform.h>

#include "error.h"
#include "moos.h"

namespace {

std::string json_str(const std::string& s) {
  std::ostringstream out;
  out << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out << '\\' << c;
    else if (c < 0x20) out << "\\u00" << "0123456789abcdef"[c >> 4] << "0123456789abcdef"[c & 15];
    else out << c;
  }
  return out.str() + '"';
}

// ExecuTorch logs CPU probing at Info level on stderr; keep the one-line error contract by passing
// on only its errors.
void quiet_log(et_timestamp_t, et_pal_log_level_t level, const char*, const char*, size_t, const char* message,
               size_t length) {
  if (level == kError || level == kFatal) std::cerr << "compkit_compress: executorch: " << std::string(message, length);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "compkit_compress: error: " << why
            << "\nusage: compkit_compress --tokenizer DIR --pte FILE [--pte FILE...] --text-file FILE [--rate R] "
               "[--force TOKEN]... [--outlier-weight W] [--repeat N]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  executorch::runtime::register_pal(executorch::runtime::PalImpl::create(quiet_log, __FILE__));
  std::string tokenizer, text_file;
  std::vector<std::string> ptes;
  compkit::CompressOptions opt;
  compkit::MoosConfig cfg;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--tokenizer") tokenizer = value();
      else if (a == "--pte") ptes.push_back(value());
      else if (a == "--text-file") text_file = value();
      else if (a == "--rate") opt.rate = std::stod(value());
      else if (a == "--force") opt.force_tokens.push_back(value());
      else if (a == "--outlier-weight") cfg.outlier_weight = std::stod(value());
      else if (a == "--repeat") repeat = std::stoi(value());
      else usage("unknown argument " + a);
    } catch (const std::logic_error&) {
      usage("bad number for " + a);
    }
  }
  if (tokenizer.empty() || ptes.empty() || text_file.empty()) usage("--tokenizer, --pte and --text-file are required");
  if (repeat < 1) usage("--repeat must be >= 1");
  std::ifstream f(text_file, std::ios::binary);
  if (!f) {
    std::cerr << "compkit_compress: error: cannot read " << text_file << "\n";
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    compkit::MoosCompressor moos(compkit::Tokenizer::from_dir(tokenizer), compkit::make_executorch_scorer(ptes), cfg);
    compkit::CompressResult r = moos.compress(ss.str(), opt);  // warm-up: first calls pay allocation
    std::vector<double> tok, fwd, post, total;
    for (int k = 0; k < repeat; ++k) {
      r = moos.compress(ss.str(), opt);
      tok.push_back(r.tokenize_ms), fwd.push_back(r.forward_ms), post.push_back(r.postprocess_ms), total.push_back(r.total_ms);
    }
    size_t kept = static_cast<size_t>(std::count(r.kept.begin(), r.kept.end(), 1));
    std::cout << "{\"compressed\":" << json_str(r.compressed) << ",\"origin_tokens\":" << r.origin_tokens
              << ",\"compressed_tokens\":" << r.compressed_tokens << ",\"windows\":" << r.windows.size()
              << ",\"words\":" << r.words.size() << ",\"kept_words\":" << kept << ",\"repeat\":" << repeat
              << ",\"median_ms\":{\"tokenize\":" << median(tok) << ",\"forward\":" << median(fwd)
              << ",\"postprocess\":" << median(post) << ",\"total\":" << median(total) << "}}\n";
  } catch (const compkit::Error& e) {
    std::cerr << "compkit_compress: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
