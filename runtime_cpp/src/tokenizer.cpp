// See tokenizer.h. Comments name the tokenizers (Rust) component each part mirrors.
#include "tokenizer.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "error.h"
#include "normalizers.h"
#include "pretokenizers_decoders.h"
#include "unicode.h"

namespace compkit {

using json = nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(COMPKIT_ERR_TOKENIZER, what); }

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
  return decode_tokens(impl_->decoder, tokens);
}

}  // namespace compkit
