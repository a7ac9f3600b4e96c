// UTF-8 and Unicode character classes, on utf8proc (a small C library that builds everywhere,
// Android and iOS included). The classes mirror what Hugging Face tokenizers (Rust) asks of a char.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace compkit {

// Decodes UTF-8; false (and no output) on invalid input: overlong forms, surrogates, truncation.
bool utf8_decode(std::string_view s, std::u32string* out);
bool utf8_valid(std::string_view s);
void utf8_append(std::u32string_view cps, std::string* out);
void utf8_append(char32_t c, std::string* out);
std::string utf8_encode(std::u32string_view cps);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(char32_t c);
// Unicode general category "C*" (Cc, Cf, Cs, Co, Cn): Rust's unicode_categories is_other().
bool is_other(char32_t c);
bool is_punctuation(char32_t c);  // category P*
bool is_ascii_punctuation(char32_t c);
bool is_nonspacing_mark(char32_t c);  // category Mn
bool is_decimal_digit(char32_t c);    // category Nd: Python re's \d on str
// Rust's char::to_lowercase (full mapping: U+0130 becomes "i\u0307").
void append_lowercase(char32_t c, std::u32string* out);

// Normalization forms over code points: "NFC", "NFD", "NFKC", "NFKD".
std::u32string normalize(std::u32string_view s, const std::string& form);

}  // namespace compkit
