// A Hugging Face tokenizer.json reader for the two families LLMLingua-2 checkpoints use:
//  - BERT WordPiece: BertNormalizer (clean text, CJK padding, accent stripping, lower-casing),
//    BertPreTokenizer (whitespace and punctuation splits), greedy longest-match WordPiece with the
//    [UNK] rule and max_input_chars_per_word, the WordPiece decoder (with its cleanup);
//  - SentencePiece Unigram (XLM-R): Nmt/NFKC/Replace normalizers, the Metaspace pre-tokenizer,
//    Viterbi over the vocabulary's scores (unknowns fused, as tokenizers does), the Metaspace decoder.
// Added tokens (special tokens and LLMLingua's [NEW0]..[NEW99]) are split out of the raw text first.
// Each step follows the Rust source of tokenizers 0.2x; docs/RUNTIME_CPP.md lists what is not read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace compkit {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json (and tokenizer_config.json / special_tokens_map.json for the special
  // token names). Throws compkit::Error (COMPKIT_ERR_TOKENIZER) on a missing or unsupported file.
  static std::unique_ptr<Tokenizer> from_dir(const std::string& dir);
  // The same from the files' contents ("" for a file that is absent).
  static std::unique_ptr<Tokenizer> from_json(const std::string& tokenizer_json, const std::string& config_json,
                                              const std::string& special_map_json, const std::string& where);
  ~Tokenizer();

  // tokenizer.tokenize(text): pieces as strings (a fused unknown keeps its raw text, as tokenizers does).
  std::vector<std::string> tokenize(std::string_view text) const;
  // tokenizer(text, add_special_tokens=False)["input_ids"].
  std::vector<int32_t> encode(std::string_view text) const;
  // Both at once.
  void encode(std::string_view text, std::vector<std::string>* pieces, std::vector<int32_t>* ids) const;
  // convert_tokens_to_ids: unknown strings map to the unknown token's id.
  int32_t token_to_id(const std::string& token) const;
  const std::string& id_to_token(int32_t id) const;
  // convert_tokens_to_string: the tokenizer's decoder over token strings.
  std::string tokens_to_string(const std::vector<std::string>& tokens) const;
  // tokenizer.add_special_tokens({"additional_special_tokens": tokens}) for those not yet present.
  void add_special_tokens(const std::vector<std::string>& tokens);

  const std::string& family() const { return family_; }  // "wordpiece" or "sentencepiece"
  // special_tokens_map values (cls, sep, pad, unk, mask, bos, eos): the pieces dropped before word merging.
  const std::unordered_set<std::string>& special_tokens() const { return special_; }
  std::string special_token(const std::string& role) const;  // "cls_token", ...; "" if none
  size_t vocab_size() const { return id_to_token_.size(); }

  struct Impl;

 private:
  Tokenizer();
  std::unique_ptr<Impl> impl_;
  std::string family_;
  std::vector<std::string> id_to_token_;
  std::unordered_set<std::string> special_;
  std::unordered_map<std::string, std::string> roles_;
};

}  // namespace compkit
