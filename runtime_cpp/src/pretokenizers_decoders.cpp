// See pretokenizers_decoders.h.
#include "pretokenizers_decoders.h"

#include "error.h"
#include "unicode.h"

namespace compkit {

using json = nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(COMPKIT_ERR_TOKENIZER, what); }

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





std::string decode_tokens(const Decoder& d, const std::vector<std::string>& tokens) {
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
