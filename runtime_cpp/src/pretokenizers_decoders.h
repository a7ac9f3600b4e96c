// Hugging Face tokenizers' pre-tokenizers (BertPreTokenizer, WhitespaceSplit, Metaspace) and decoders
// (WordPiece with its cleanup, Metaspace), as tokenizers/src/{pre_tokenizers,decoders}/*.rs do them.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace compkit {

struct PreTokenizer {
  std::string type;  // BertPreTokenizer, Metaspace, WhitespaceSplit
  char32_t replacement = 0x2581;
  std::string prepend_scheme = "always";
  bool split = true;
};

using Words = std::vector<std::u32string>;

// Appends the pre-tokenizer(s) of a tokenizer.json "pre_tokenizer" entry (a Sequence is flattened).
void load_pretokenizer(const nlohmann::json& j, std::vector<PreTokenizer>* out);
// Splits every word further; first_segment: the text starts here (Metaspace's "first" scheme).
Words pretokenize(const PreTokenizer& p, const Words& in, bool first_segment);

struct Decoder {
  std::string type;  // WordPiece, Metaspace, none
  std::string prefix = "##";
  bool cleanup = true;
  std::string replacement = "\xE2\x96\x81";
  std::string prepend_scheme = "always";
};

// convert_tokens_to_string through the decoder (an empty type joins with spaces).
std::string decode_tokens(const Decoder& d, const std::vector<std::string>& tokens);

}  // namespace compkit
