// Tokenizers against the Python reference (token ids and pieces exact), and their error paths.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "error.h"
#include "tokenizer.h"
#include "vectors.h"

namespace compkit::testing {
namespace {

// A hand-made WordPiece tokenizer.json: enough to pin single rules without any checkpoint.
const char* kTinyWordPiece = R"({
  "added_tokens": [{"id": 0, "content": "[PAD]", "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                   {"id": 1, "content": "[UNK]", "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 8,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "cafe": 2, "un": 3, "##able": 4, ",": 5, "東": 6, "京": 7, "!": 8, "a": 9, "##a": 10}}
})";

std::vector<std::string> pieces_of(const Tokenizer& t, const std::string& s) { return t.tokenize(s); }

TEST(Tokenizer, WordPieceRulesOnAHandMadeVocabulary) {
  auto t = Tokenizer::from_json(kTinyWordPiece, "", "", "inline");
  EXPECT_EQ(t->family(), "wordpiece");
  // accents stripped after NFD, lower-cased, punctuation split off, CJK chars isolated
  EXPECT_EQ(pieces_of(*t, "CAFÉ, unable!"), (std::vector<std::string>{"cafe", ",", "un", "##able", "!"}));
  EXPECT_EQ(pieces_of(*t, "東京"), (std::vector<std::string>{"東", "京"}));
  // a word with any unmatched rest is one [UNK]; longer than max_input_chars_per_word too
  EXPECT_EQ(pieces_of(*t, "unablex aaaaaaaa aaaaaaaaa"), (std::vector<std::string>{"[UNK]", "a", "##a", "##a", "##a", "##a", "##a", "##a", "##a", "[UNK]"}));
  EXPECT_EQ(t->encode("[PAD]cafe"), (std::vector<int32_t>{0, 2}));  // added tokens split out of raw text
  EXPECT_EQ(t->tokens_to_string({"un", "##able", ",", "cafe", "!"}), "unable, cafe!");
  t->add_special_tokens({"[NEW0]"});
  EXPECT_EQ(t->encode("cafe[NEW0]cafe"), (std::vector<int32_t>{2, 11, 2}));
  EXPECT_THROW(t->encode(std::string("caf\xC3", 4)), Error);
}

TEST(Tokenizer, MissingOrBrokenFilesAreErrorsNotCrashes) {
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(' '), std::string::npos);
      return e.code;
    }
    return COMPKIT_OK;
  };
  EXPECT_EQ(code_of([] { Tokenizer::from_dir("/nonexistent/moos_tokenizer"); }), COMPKIT_ERR_TOKENIZER);
  EXPECT_EQ(code_of([] { Tokenizer::from_json("{not json", "", "", "x"); }), COMPKIT_ERR_TOKENIZER);
  EXPECT_EQ(code_of([] { Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {}}})", "", "", "x"); }),
            COMPKIT_ERR_TOKENIZER);
  EXPECT_EQ(code_of([] { Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", "", "", "x"); }),
            COMPKIT_ERR_TOKENIZER);  // no [UNK]
  EXPECT_EQ(code_of([] { Tokenizer::from_json(R"({"model": 3})", "", "", "x"); }), COMPKIT_ERR_TOKENIZER);
}

TEST(Tokenizer, ReproducesPythonPiecesAndIds) {
  auto dirs = vector_dirs();
  if (dirs.empty()) GTEST_SKIP() << "COMPKIT_VECTORS not set (tests/test_runtime_cpp.py sets it)";
  for (const auto& dir : dirs) {
    const VectorSet& v = load_vectors(dir);
    auto t = Tokenizer::from_dir(v.tokenizer_dir());
    t->add_special_tokens(new_tokens(v.j["max_force_token"].get<int>()));
    EXPECT_EQ(t->family(), v.j["family"].get<std::string>());
    const auto& texts = v.j["texts"];
    int bad = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      std::string text = texts[i].get<std::string>();
      std::vector<std::string> pieces;
      std::vector<int32_t> ids;
      t->encode(text, &pieces, &ids);
      auto want_ids = v.j["token_ids"][i].get<std::vector<int32_t>>();
      auto want_pieces = strings(v.j["pieces"][i]);
      if (ids != want_ids || pieces != want_pieces) {
        if (++bad <= 3 && pieces == want_pieces) {
          ADD_FAILURE() << v.name << " text " << i << ": same pieces, different ids: " << text.substr(0, 120);
        } else if (bad <= 3) {
          size_t k = 0;
          while (k < pieces.size() && k < want_pieces.size() && pieces[k] == want_pieces[k]) ++k;
          ADD_FAILURE() << v.name << " text " << i << " differs at piece " << k << ": got '"
                        << (k < pieces.size() ? pieces[k] : "<end>") << "' want '"
                        << (k < want_pieces.size() ? want_pieces[k] : "<end>") << "' in: " << text.substr(0, 120);
        }
      }
    }
    EXPECT_EQ(bad, 0) << v.name << ": " << bad << " of " << texts.size() << " texts tokenized differently";
    for (const auto& d : v.j["decode"])
      EXPECT_EQ(t->tokens_to_string(strings(d["tokens"])), d["text"].get<std::string>()) << v.name;
  }
}

}  // namespace
}  // namespace compkit::testing
