// Hugging Face tokenizers' normalizers, over code points: BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase,
// StripAccents, Nmt, Replace, Strip, Prepend, and Precompiled (a SentencePiece charsmap, the layout of
// the public XLM-R tokenizer.json). Each mirrors tokenizers/src/normalizers/*.rs.
#pragma once

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace compkit {

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

// Appends the normalizer(s) of a tokenizer.json "normalizer" entry (a Sequence is flattened).
void load_normalizer(const nlohmann::json& j, std::vector<Normalizer>* out);
std::u32string apply(const Normalizer& n, std::u32string s);

}  // namespace compkit
