// See normalizers.h.
#include "normalizers.h"

#include <cstring>

#include <utf8proc.h>

#include "error.h"
#include "unicode.h"

namespace compkit {

using json = nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(COMPKIT_ERR_TOKENIZER, what); }

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

}  // namespace

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

}  // namespace compkit
