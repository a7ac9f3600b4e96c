// See tokenizer.h. Comments name the tokenizers (Rust) component each part mirrors.
#include "tokenizer.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <cstring>

#include <utf8proc.h>

#include <nlohmann/json.hpp>

#include "error.h"
#include "unicode.h"

namespace compkit {

using json = nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(COMPKIT_ERR_TOKENIZER, what); }

// ---------------------------------------------------------------- normalizers
struct Normalizer {
  std::string type;
  bool clean_text = true, chinese = true, strip_accents = true, lowercase = true;  // BertNormalizer
  std::string form;                                                               // NFC/NFD/NFKC/NFKD
  std::string pattern, content;                                                   // Replace
  bool is_regex = false;
  std::regex regex;
  bool left = true, right = true;  // Strip
  std::string prepend;             // Prepend
  std::vector<uint32_t> trie;      // Precompiled: a darts-clone double array ...
  std::string replacements;        // ... whose values index NUL-terminated replacement strings
};

std::string base64_decode(const std::string& in) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+') v = 62;
    else if (ch == '/') v = 63;
    else if (ch == '=') break;
    else continue;
    buf = (buf << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xFF));
    }
  }
  return out;
}

// spm_precompiled's Precompiled::transform: the FIRST (shortest) prefix match in the double array
// replaces the whole chunk, matched or not: as SentencePiece and tokenizers do.
const char* precompiled_transform(const Normalizer& n, std::string_view chunk, size_t* len) {
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  auto label = [](uint32_t u) { return u & ((1u << 31) | 0xFFu); };
  auto has_leaf = [](uint32_t u) { return ((u >> 8) & 1u) == 1u; };
  auto value = [](uint32_t u) { return u & ((1u << 31) - 1); };
  if (n.trie.empty()) return nullptr;
  size_t pos = offset(n.trie[0]);
  for (unsigned char c : chunk) {
    if (c == 0) break;
    pos ^= c;
    if (pos >= n.trie.size() || label(n.trie[pos]) != c) return nullptr;
    const uint32_t unit = n.trie[pos];
    pos ^= offset(unit);
    if (pos >= n.trie.size()) return nullptr;
    if (has_leaf(unit)) {
      size_t at = value(n.trie[pos]);
      if (at >= n.replacements.size()) return nullptr;
      const char* s = n.replacements.data() + at;
      *len = strnlen(s, n.replacements.size() - at);
      return s;
    }
  }
  return nullptr;
}

// normalizers/precompiled.rs: per extended grapheme cluster (short ones whole, else char by char).
std::u32string precompiled(const Normalizer& n, std::u32string_view s) {
  std::string out;
  auto apply_part = [&](std::u32string_view part, bool whole) {
    std::string bytes = utf8_encode(part);
    size_t len = 0;
    if (!whole || bytes.size() < 6) {
      if (const char* r = precompiled_transform(n, bytes, &len)) {
        out.append(r, len);
        return true;
      }
    }
    if (!whole) out += bytes;
    return false;
  };
  size_t start = 0;
  utf8proc_int32_t state = 0;
  for (size_t i = 1; i <= s.size(); ++i) {
    if (i < s.size() && !utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(s[i - 1]),
                                                          static_cast<utf8proc_int32_t>(s[i]), &state))
      continue;
    std::u32string_view g = s.substr(start, i - start);
    if (!apply_part(g, true))
      for (size_t k = 0; k < g.size(); ++k) apply_part(g.substr(k, 1), false);
    start = i;
  }
  std::u32string r;
  utf8_decode(out, &r);
  return r;
}

bool is_chinese_char(char32_t c) {  // normalizers/bert.rs
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

std::u32string strip_marks(std::u32string_view s) {
  std::u32string out;
  for (char32_t c : s)
    if (!is_nonspacing_mark(c)) out.push_back(c);
  return out;
}

std::u32string lowercase(std::u32string_view s) {
  std::u32string out;
  for (char32_t c : s) append_lowercase(c, &out);
  return out;
}

std::u32string apply(const Normalizer& n, std::u32string s) {
  if (n.type == "BertNormalizer") {
    if (n.clean_text) {
      std::u32string out;
      for (char32_t c : s) {
        bool control = !(c == U'\t' || c == U'\n' || c == U'\r') && is_other(c);
        if (c == 0 || c == 0xFFFD || control) continue;
        out.push_back(is_whitespace(c) ? U' ' : c);
      }
      s = std::move(out);
    }
    if (n.chinese) {
      std::u32string out;
      for (char32_t c : s) {
        if (is_chinese_char(c)) {
          out.push_back(U' ');
          out.push_back(c);
          out.push_back(U' ');
        } else {
          out.push_back(c);
        }
      }
      s = std::move(out);
    }
    if (n.strip_accents) s = strip_marks(normalize(s, "NFD"));
    if (n.lowercase) s = lowercase(s);
    return s;
  }
  if (n.type == "NFC" || n.type == "NFD" || n.type == "NFKC" || n.type == "NFKD") return normalize(s, n.type);
  if (n.type == "Lowercase") return lowercase(s);
  if (n.type == "StripAccents") return strip_marks(s);
  if (n.type == "Nmt") {  // normalizers/unicode.rs: drop ASCII controls, map odd spaces to ' '
    std::u32string out;
    for (char32_t c : s) {
      if ((c >= 0x01 && c <= 0x08) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F)
        continue;
      bool space = c == 0x09 || c == 0x0A || c == 0x0C || c == 0x0D || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
                   c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD;
      out.push_back(space ? U' ' : c);
    }
    return out;
  }
  if (n.type == "Replace") {
    std::string u = utf8_encode(s), out;
    if (n.is_regex) {
      out = std::regex_replace(u, n.regex, n.content);
    } else if (!n.pattern.empty()) {
      size_t pos = 0;
      for (size_t hit; (hit = u.find(n.pattern, pos)) != std::string::npos; pos = hit + n.pattern.size())
        out += u.substr(pos, hit - pos) + n.content;
      out += u.substr(pos);
    } else {
      out = u;
    }
    std::u32string r;
    utf8_decode(out, &r);
    return r;
  }
  if (n.type == "Strip") {
    size_t a = 0, b = s.size();
    if (n.left) while (a < b && is_whitespace(s[a])) ++a;
    if (n.right) while (b > a && is_whitespace(s[b - 1])) --b;
    return s.substr(a, b - a);
  }
  if (n.type == "Precompiled") return precompiled(n, s);
  if (n.type == "Prepend") {
    if (s.empty()) return s;
    std::u32string p;
    utf8_decode(n.prepend, &p);
    return p + s;
  }
  fail("unsupported normalizer " + n.type);
}

void load_normalizer(const json& j, std::vector<Normalizer>* out) {
  if (j.is_null()) return;
  std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) load_normalizer(n, out);
    return;
  }
  Normalizer n;
  n.type = type;
  if (type == "BertNormalizer") {
    n.clean_text = j.value("clean_text", true);
    n.chinese = j.value("handle_chinese_chars", true);
    n.lowercase = j.value("lowercase", true);
    // strip_accents null follows lowercase (normalizers/bert.rs)
    n.strip_accents = j.contains("strip_accents") && !j["strip_accents"].is_null() ? j["strip_accents"].get<bool>() : n.lowercase;
  } else if (type == "Replace") {
    const json& p = j.at("pattern");
    if (p.contains("Regex")) {
      n.is_regex = true;
      n.pattern = p["Regex"].get<std::string>();
      try {
        n.regex = std::regex(n.pattern, std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        fail("unsupported Replace regex " + n.pattern);
      }
    } else {
      n.pattern = p.at("String").get<std::string>();
    }
    n.content = j.value("content", "");
  } else if (type == "Strip") {
    n.left = j.value("strip_left", true);
    n.right = j.value("strip_right", true);
  } else if (type == "Prepend") {
    n.prepend = j.value("prepend", "");
  } else if (type == "Precompiled") {
    std::string raw = base64_decode(j.value("precompiled_charsmap", ""));
    if (raw.size() < 4) fail("empty Precompiled charsmap");
    uint32_t trie_bytes = static_cast<uint32_t>(static_cast<unsigned char>(raw[0])) |
                          static_cast<uint32_t>(static_cast<unsigned char>(raw[1])) << 8 |
                          static_cast<uint32_t>(static_cast<unsigned char>(raw[2])) << 16 |
                          static_cast<uint32_t>(static_cast<unsigned char>(raw[3])) << 24;
    if (trie_bytes % 4 || 4 + static_cast<size_t>(trie_bytes) > raw.size()) fail("corrupt Precompiled charsmap");
    n.trie.resize(trie_bytes / 4);
    for (size_t i = 0; i < n.trie.size(); ++i) {
      const auto* b = reinterpret_cast<const unsigned char*>(raw.data() + 4 + 4 * i);
      n.trie[i] = static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 | static_cast<uint32_t>(b[2]) << 16 |
                  static_cast<uint32_t>(b[3]) << 24;
    }
    n.replacements = raw.substr(4 + trie_bytes);
  } else if (!(type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase" ||
               type == "StripAccents" || type == "Nmt")) {
    fail("unsupported normalizer " + type);
  }
  out->push_back(std::move(n));
}

// ---------------------------------------------------------------- pre-tokenizers
struct PreTokenizer {
  std::string type;  // BertPreTokenizer, Metaspace, WhitespaceSplit
  char32_t replacement = 0x2581;
  std::string prepend_scheme = "always";
  bool split = true;
};

void load_pretokenizer(const json& j, std::vector<PreTokenizer>* out) {
  if (j.is_null()) return;
  std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("pretokenizers")) load_pretokenizer(p, out);
    return;
  }
  PreTokenizer p;
  p.type = type;
  if (type == "Metaspace") {
    std::u32string r;
    utf8_decode(j.value("replacement", "\xE2\x96\x81"), &r);
    if (r.size() != 1) fail("Metaspace replacement must be one character");
    p.replacement = r[0];
    if (j.contains("prepend_scheme")) p.prepend_scheme = j["prepend_scheme"].get<std::string>();
    else p.prepend_scheme = j.value("add_prefix_space", true) ? "always" : "never";
    p.split = j.value("split", true);
  } else if (type != "BertPreTokenizer" && type != "WhitespaceSplit") {
    fail("unsupported pre_tokenizer " + type);
  }
  out->push_back(p);
}

using Words = std::vector<std::u32string>;

Words pretokenize(const PreTokenizer& p, const Words& in, bool first_segment) {
  Words out;
  for (const auto& w : in) {
    if (p.type == "BertPreTokenizer" || p.type == "WhitespaceSplit") {
      std::u32string cur;
      for (char32_t c : w) {
        if (is_whitespace(c)) {
          if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
        } else if (p.type == "BertPreTokenizer" && (is_ascii_punctuation(c) || is_punctuation(c))) {
          if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
          out.push_back(std::u32string(1, c));
        } else {
          cur.push_back(c);
        }
      }
      if (!cur.empty()) out.push_back(std::move(cur));
    } else {  // Metaspace: spaces become the replacement, prepend it, split before each one
      std::u32string s = w;
      for (char32_t& c : s)
        if (c == U' ') c = p.replacement;
      bool prepend = p.prepend_scheme == "always" || (p.prepend_scheme == "first" && first_segment);
      if (prepend && (s.empty() || s[0] != p.replacement)) s.insert(s.begin(), p.replacement);
      if (!p.split) {
        out.push_back(s);
        continue;
      }
      std::u32string cur;
      for (char32_t c : s) {
        if (c == p.replacement && !cur.empty()) out.push_back(std::move(cur)), cur.clear();
        cur.push_back(c);
      }
      if (!cur.empty()) out.push_back(std::move(cur));
    }
  }
  return out;
}

struct Decoder {
  std::string type;  // WordPiece, Metaspace, none
  std::string prefix = "##";
  bool cleanup = true;
  std::string replacement = "\xE2\x96\x81";
  std::string prepend_scheme = "always";
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::string wordpiece_cleanup(std::string s) {  // decoders/wordpiece.rs
  static const std::pair<const char*, const char*> rules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& r : rules) s = replace_all(std::move(s), r.first, r.second);
  return s;
}

}  // namespace

// ---------------------------------------------------------------- the tokenizer
struct Tokenizer::Impl {
  struct Added {
    std::string content;
    int32_t id;
    bool lstrip = false, rstrip = false, normalized = false;
  };
  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pretokenizers;
  Decoder decoder;
  std::string model;  // WordPiece or Unigram
  std::unordered_map<std::string, int32_t> model_vocab;
  std::unordered_map<std::string, int32_t> all_vocab;  // model + added, what token_to_id reads
  std::vector<Added> added;
  int32_t unk_id = -1;
  std::string unk_token;
  // WordPiece
  std::string subword_prefix = "##";
  size_t max_chars = 100;
  // Unigram
  std::vector<double> scores;
  double min_score = 0;
  size_t max_piece_bytes = 0;
  bool fuse_unk = true;

  std::u32string normalize_text(std::u32string s) const {
    for (const auto& n : normalizers) s = apply(n, std::move(s));
    return s;
  }

  struct Span { size_t begin, end; int added; };  // added index or -1

  // AddedVocabulary::find_matches: leftmost-longest over the tokens of one kind, lstrip/rstrip
  // widening the match over whitespace.
  std::vector<Span> find_added(std::string_view text, bool normalized) const {
    std::vector<Span> spans;
    size_t pos = 0, plain = 0;
    while (pos < text.size()) {
      int best = -1;
      size_t best_len = 0;
      for (size_t k = 0; k < added.size(); ++k) {
        const auto& a = added[k];
        if (a.normalized != normalized || a.content.size() <= best_len) continue;
        if (text.compare(pos, a.content.size(), a.content) == 0) best = static_cast<int>(k), best_len = a.content.size();
      }
      if (best < 0) {
        ++pos;
        continue;
      }
      size_t begin = pos, end = pos + best_len;
      std::u32string cps;
      if (added[best].lstrip) {
        while (begin > plain) {  // walk back over whitespace chars, one UTF-8 char at a time
          size_t b = begin - 1;
          while (b > plain && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
          if (!utf8_decode(text.substr(b, begin - b), &cps) || cps.size() != 1 || !is_whitespace(cps[0])) break;
          begin = b;
        }
      }
      if (added[best].rstrip) {
        while (end < text.size()) {
          size_t e = end + 1;
          while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;
          if (!utf8_decode(text.substr(end, e - end), &cps) || cps.size() != 1 || !is_whitespace(cps[0])) break;
          end = e;
        }
      }
      if (begin > plain) spans.push_back({plain, begin, -1});
      spans.push_back({begin, end, best});
      pos = plain = end;
    }
    if (plain < text.size()) spans.push_back({plain, text.size(), -1});
    return spans;
  }

  void wordpiece(const std::u32string& word, std::vector<std::string>* pieces, std::vector<int32_t>* ids) const {
    if (word.size() > max_chars) {
      pieces->push_back(unk_token);
      ids->push_back(unk_id);
      return;
    }
    std::vector<std::string> sub;
    std::vector<int32_t> sub_ids;
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      bool found = false;
      while (start < end) {
        std::string s = start > 0 ? subword_prefix : std::string();
        utf8_append(std::u32string_view(word).substr(start, end - start), &s);
        auto it = model_vocab.find(s);
        if (it != model_vocab.end()) {
          sub.push_back(s);
          sub_ids.push_back(it->second);
          found = true;
          break;
        }
        --end;
      }
      if (!found) {
        pieces->push_back(unk_token);
        ids->push_back(unk_id);
        return;
      }
      start = end;
    }
    pieces->insert(pieces->end(), sub.begin(), sub.end());
    ids->insert(ids->end(), sub_ids.begin(), sub_ids.end());
  }

  // models/unigram/model.rs encode_optimized: best path by score, ties keep the first candidate
  // (shorter pieces from earlier starts), unknown chars cost min_score - 10 and are fused.
  void unigram(const std::u32string& word, std::vector<std::string>* pieces, std::vector<int32_t>* ids) const {
    std::string s = utf8_encode(word);
    const size_t n = s.size();
    struct Node { int32_t id = -1; double score = 0; long starts_at = -1; };
    std::vector<Node> best(n + 1);
    const double unk_score = min_score - 10.0;
    size_t start = 0;
    while (start < n) {
      const double here = best[start].score;
      size_t mblen = 1;
      while (start + mblen < n && (static_cast<unsigned char>(s[start + mblen]) & 0xC0) == 0x80) ++mblen;
      bool single = false;
      size_t limit = std::min(n - start, max_piece_bytes);
      for (size_t len = 1; len <= limit; ++len) {
        if (start + len < n && (static_cast<unsigned char>(s[start + len]) & 0xC0) == 0x80) continue;
        auto it = model_vocab.find(s.substr(start, len));
        if (it == model_vocab.end()) continue;
        Node& t = best[start + len];
        double cand = scores[it->second] + here;
        if (t.starts_at < 0 || cand > t.score) t = {it->second, cand, static_cast<long>(start)};
        if (len == mblen) single = true;
      }
      if (!single) {
        Node& t = best[start + mblen];
        double cand = unk_score + here;
        if (t.starts_at < 0 || cand > t.score) t = {unk_id, cand, static_cast<long>(start)};
      }
      start += mblen;
    }
    std::vector<std::pair<std::string, int32_t>> out;
    std::string fused;
    for (size_t end = n; end > 0;) {
      const Node& node = best[end];
      size_t st = static_cast<size_t>(node.starts_at);
      std::string piece = s.substr(st, end - st);
      if (fuse_unk && node.id == unk_id) {
        fused = piece + fused;
      } else {
        if (!fused.empty()) out.push_back({fused, unk_id}), fused.clear();
        out.push_back({piece, node.id});
      }
      end = st;
    }
    if (!fused.empty()) out.push_back({fused, unk_id});
    for (auto it = out.rbegin(); it != out.rend(); ++it) {
      pieces->push_back(it->first);
      ids->push_back(it->second);
    }
  }

  void encode_normalized(const std::u32string& text, bool first_segment, std::vector<std::string>* pieces,
                         std::vector<int32_t>* ids) const {
    Words words{text};
    for (const auto& p : pretokenizers) words = pretokenize(p, words, first_segment);
    for (const auto& w : words) {
      if (w.empty()) continue;
      if (model == "WordPiece") wordpiece(w, pieces, ids);
      else unigram(w, pieces, ids);
    }
  }
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

static std::string read_file(const std::string& path, bool required) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (required) fail("cannot read " + path + ": pass the tokenizer folder saved beside the artifacts (moos_tokenizer/)");
    return "";
  }
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> Tokenizer::from_dir(const std::string& dir) {
  return from_json(read_file(dir + "/tokenizer.json", true), read_file(dir + "/tokenizer_config.json", false),
                   read_file(dir + "/special_tokens_map.json", false), dir + "/tokenizer.json");
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json,
                                                const std::string& special_map_json, const std::string& where) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  Impl& m = *t->impl_;
  json j;
  try {
    j = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    fail("corrupt " + where + ": " + e.what());
  }
  try {
    load_normalizer(j.value("normalizer", json()), &m.normalizers);
    load_pretokenizer(j.value("pre_tokenizer", json()), &m.pretokenizers);
    const json& model = j.at("model");
    m.model = model.value("type", "");
    int32_t max_id = -1;
    if (m.model == "WordPiece") {
      t->family_ = "wordpiece";
      for (const auto& [tok, id] : model.at("vocab").items()) {
        m.model_vocab[tok] = id.get<int32_t>();
        max_id = std::max(max_id, id.get<int32_t>());
      }
      m.unk_token = model.value("unk_token", "[UNK]");
      m.subword_prefix = model.value("continuing_subword_prefix", "##");
      m.max_chars = model.value("max_input_chars_per_word", 100);
      auto it = m.model_vocab.find(m.unk_token);
      if (it == m.model_vocab.end()) fail(where + ": the WordPiece unk_token " + m.unk_token + " is not in the vocabulary");
      m.unk_id = it->second;
    } else if (m.model == "Unigram") {
      t->family_ = "sentencepiece";
      if (model.value("byte_fallback", false)) fail(where + ": Unigram byte_fallback is not supported");
      int32_t id = 0;
      m.min_score = std::numeric_limits<double>::infinity();
      for (const auto& entry : model.at("vocab")) {
        std::string piece = entry.at(0).get<std::string>();
        double score = entry.at(1).get<double>();
        m.model_vocab.emplace(piece, id);
        m.scores.push_back(score);
        m.min_score = std::min(m.min_score, score);
        m.max_piece_bytes = std::max(m.max_piece_bytes, piece.size());
        ++id;
      }
      max_id = id - 1;
      if (model.contains("unk_id") && !model["unk_id"].is_null()) m.unk_id = model["unk_id"].get<int32_t>();
      if (m.unk_id < 0) fail(where + ": the Unigram model has no unk_id");
    } else {
      fail(where + ": unsupported model " + m.model + " (compkit reads WordPiece and Unigram tokenizers)");
    }
    t->id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
    for (const auto& [tok, id] : m.model_vocab) t->id_to_token_[static_cast<size_t>(id)] = tok;
    m.all_vocab = m.model_vocab;
    for (const auto& a : j.value("added_tokens", json::array())) {
      Impl::Added added{a.at("content").get<std::string>(), a.at("id").get<int32_t>(), a.value("lstrip", false),
                        a.value("rstrip", false), a.value("normalized", false)};
      if (added.id < 0) fail(where + ": negative added token id");
      if (static_cast<size_t>(added.id) >= t->id_to_token_.size()) t->id_to_token_.resize(static_cast<size_t>(added.id) + 1);
      t->id_to_token_[static_cast<size_t>(added.id)] = added.content;
      m.all_vocab[added.content] = added.id;
      m.added.push_back(added);
    }
    const json& dec = j.value("decoder", json());
    m.decoder.type = dec.is_null() ? "" : dec.value("type", "");
    if (m.decoder.type == "WordPiece") {
      m.decoder.prefix = dec.value("prefix", "##");
      m.decoder.cleanup = dec.value("cleanup", true);
    } else if (m.decoder.type == "Metaspace") {
      m.decoder.replacement = dec.value("replacement", "\xE2\x96\x81");
      if (dec.contains("prepend_scheme")) m.decoder.prepend_scheme = dec["prepend_scheme"].get<std::string>();
      else m.decoder.prepend_scheme = dec.value("add_prefix_space", true) ? "always" : "never";
    } else if (!m.decoder.type.empty()) {
      fail(where + ": unsupported decoder " + m.decoder.type);
    }
  } catch (const json::exception& e) {
    fail("unexpected layout in " + where + ": " + e.what());
  }

  // Special token names: tokenizer_config.json, then special_tokens_map.json, else the family's defaults.
  static const char* roles[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
  bool any = false;
  for (const std::string* text : {&config_json, &special_map_json}) {
    if (text->empty()) continue;
    json c = json::parse(*text, nullptr, false);
    if (c.is_discarded() || !c.is_object()) fail("corrupt tokenizer config beside " + where);
    for (const char* role : roles) {
      if (!c.contains(role) || t->roles_.count(role)) continue;
      const json& v = c[role];
      if (v.is_string()) t->roles_[role] = v.get<std::string>();
      else if (v.is_object() && v.contains("content")) t->roles_[role] = v["content"].get<std::string>();
      any = true;
    }
  }
  if (!any) {
    if (t->family_ == "wordpiece")
      t->roles_ = {{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"}, {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"}};
    else
      t->roles_ = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"sep_token", "</s>"},
                   {"pad_token", "<pad>"}, {"cls_token", "<s>"}, {"mask_token", "<mask>"}};
  }
  for (const auto& [role, tok] : t->roles_) t->special_.insert(tok);
  return t;
}

std::string Tokenizer::special_token(const std::string& role) const {
  auto it = roles_.find(role);
  return it == roles_.end() ? std::string() : it->second;
}

void Tokenizer::add_special_tokens(const std::vector<std::string>& tokens) {
  for (const auto& tok : tokens) {
    if (impl_->all_vocab.count(tok)) continue;
    int32_t id = static_cast<int32_t>(id_to_token_.size());
    id_to_token_.push_back(tok);
    impl_->all_vocab[tok] = id;
    impl_->added.push_back({tok, id, false, false, false});
  }
}

void Tokenizer::encode(std::string_view text, std::vector<std::string>* pieces, std::vector<int32_t>* ids) const {
  const Impl& m = *impl_;
  bool first = true;
  for (const auto& raw : m.find_added(text, false)) {
    if (raw.added >= 0) {
      pieces->push_back(m.added[raw.added].content);
      ids->push_back(m.added[raw.added].id);
      first = false;
      continue;
    }
    std::u32string cps;
    if (!utf8_decode(text.substr(raw.begin, raw.end - raw.begin), &cps))
      throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "text is not valid UTF-8");
    std::string normalized = utf8_encode(m.normalize_text(std::move(cps)));
    for (const auto& seg : m.find_added(normalized, true)) {
      if (seg.added >= 0) {
        pieces->push_back(m.added[seg.added].content);
        ids->push_back(m.added[seg.added].id);
      } else {
        std::u32string part;
        utf8_decode(std::string_view(normalized).substr(seg.begin, seg.end - seg.begin), &part);
        m.encode_normalized(part, first, pieces, ids);
      }
      first = false;
    }
  }
}

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  std::vector<int32_t> ids;
  encode(text, &pieces, &ids);
  return pieces;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<std::string> pieces;
  std::vector<int32_t> ids;
  encode(text, &pieces, &ids);
  return ids;
}

int32_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->all_vocab.find(token);
  return it == impl_->all_vocab.end() ? impl_->unk_id : it->second;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size())
    throw Error(COMPKIT_ERR_INVALID_ARGUMENT, "token id " + std::to_string(id) + " is outside the vocabulary");
  return id_to_token_[static_cast<size_t>(id)];
}

std::string Tokenizer::tokens_to_string(const std::vector<std::string>& tokens) const {
  const Decoder& d = impl_->decoder;
  std::string out;
  if (d.type == "WordPiece") {  // decoders/wordpiece.rs: the first token keeps any prefix
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string tok = tokens[i];
      if (i != 0) {
        if (tok.compare(0, d.prefix.size(), d.prefix) == 0) tok.erase(0, d.prefix.size());
        else tok.insert(tok.begin(), ' ');
      }
      out += d.cleanup ? wordpiece_cleanup(std::move(tok)) : tok;
    }
  } else if (d.type == "Metaspace") {  // decoders: the first token loses every replacement char
    for (size_t i = 0; i < tokens.size(); ++i) {
      bool drop = i == 0 && d.prepend_scheme != "never";
      out += replace_all(tokens[i], d.replacement, drop ? "" : " ");
    }
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

}  // namespace compkit
