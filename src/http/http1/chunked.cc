#include "http/http1/chunked.h"

#include "http/http1/parser.h"

namespace citadel::http::http1 {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_tchar(char c) { return is_token(std::string_view(&c, 1)); }

bool is_qdtext(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u == '\t' || u == ' ' || u == 0x21 || (u >= 0x23 && u <= 0x5b) ||
         (u >= 0x5d && u <= 0x7e) || u >= 0x80;
}

}  // namespace

void ChunkedDecoder::trailers(HeaderMap& out) const {
  if (!has_trailers()) return;
  std::string_view rest = *trailer_text_;
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;  // decode() refused these
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    out.add(line.substr(0, colon), value);
  }
}

size_t format_chunk_header(uint64_t size, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char tmp[16];
  size_t n = 0;
  do {
    tmp[n++] = kHex[size & 0xf];
    size >>= 4;
  } while (size != 0);
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  out[n] = '\r';
  out[n + 1] = '\n';
  return n + 2;
}

ChunkedDecoder::Result ChunkedDecoder::decode(std::string_view& in, std::string_view& data) {
  while (!in.empty()) {
    switch (state_) {
      case State::kData: {
        size_t n = in.size() < remaining_ ? in.size() : static_cast<size_t>(remaining_);
        data = in.substr(0, n);
        in.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCr;
        return Result::kData;
      }
      case State::kDone:
        return Result::kDone;
      case State::kError:
        return Result::kError;
      default:
        break;
    }
    char c = in.front();
    in.remove_prefix(1);
    switch (state_) {
      case State::kSize: {
        if (++line_bytes_ > kMaxLineBytes) return fail("chunk size line too long");
        int h = hex_value(c);
        if (h >= 0) {
          // chunk-size = 1*HEXDIG: leading zeros are valid, so bound the value (it must fit
          // in 64 bits), not the number of digits; the line limit bounds the digits.
          if ((remaining_ >> 60) != 0) return fail("chunk size overflow");
          ++size_digits_;
          remaining_ = (remaining_ << 4) | static_cast<uint64_t>(h);
          break;
        }
        if (size_digits_ == 0) return fail("invalid chunk size");
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExt;
          ext_state_ = c == ';' ? 0 : 8;
        } else {
          return fail("invalid chunk size");
        }
        break;
      }
      case State::kExt: {
        if (++line_bytes_ > kMaxLineBytes) return fail("chunk extension too long");
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
        switch (ext_state_) {
          case 0:  // after ';', before name
            if (c == ' ' || c == '\t') break;
            if (!is_tchar(c)) return fail("invalid chunk extension");
            ext_state_ = 1;
            break;
          case 1:  // in name
            if (is_tchar(c)) break;
            if (c == '=') ext_state_ = 3;
            else if (c == ' ' || c == '\t') ext_state_ = 2;
            else if (c == ';') ext_state_ = 0;
            else if (c == '\r') state_ = State::kSizeLf;
            else return fail("invalid chunk extension");
            break;
          case 2:  // BWS after name
            if (c == ' ' || c == '\t') break;
            if (c == '=') ext_state_ = 3;
            else if (c == ';') ext_state_ = 0;
            else if (c == '\r') state_ = State::kSizeLf;
            else return fail("invalid chunk extension");
            break;
          case 3:  // before value
            if (c == ' ' || c == '\t') break;
            if (c == '"') ext_state_ = 5;
            else if (is_tchar(c)) ext_state_ = 4;
            else return fail("invalid chunk extension value");
            break;
          case 4:  // token value
            if (is_tchar(c)) break;
            if (c == ';') ext_state_ = 0;
            else if (c == ' ' || c == '\t') ext_state_ = 7;
            else if (c == '\r') state_ = State::kSizeLf;
            else return fail("invalid chunk extension value");
            break;
          case 5:  // quoted value
            if (c == '"') ext_state_ = 7;
            else if (c == '\\') ext_state_ = 6;
            else if (!is_qdtext(c)) return fail("invalid quoted chunk extension");
            break;
          case 6:  // quoted-pair
            if (c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) ||
                static_cast<unsigned char>(c) >= 0x80) {
              ext_state_ = 5;
              break;
            }
            return fail("invalid quoted chunk extension");
          case 8:  // BWS after the size: only before a ';'
            if (c == ' ' || c == '\t') break;
            if (c == ';') ext_state_ = 0;
            else return fail("whitespace after chunk size");
            break;
          case 7:  // after a value, only BWS, ';' or CR
            if (c == ' ' || c == '\t') break;
            if (c == ';') ext_state_ = 0;
            else if (c == '\r') state_ = State::kSizeLf;
            else return fail("invalid chunk extension");
            break;
        }
        if (state_ == State::kSizeLf && (ext_state_ == 0 || ext_state_ == 3 || ext_state_ == 5 ||
                                         ext_state_ == 6 || ext_state_ == 8)) {
          return fail("incomplete chunk extension");
        }
        break;
      }
      case State::kSizeLf:
        if (c != '\n') return fail("bare CR in chunk size line");
        line_bytes_ = 0;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kDataCr:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        state_ = State::kSize;
        remaining_ = 0;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kFinalLf;
          break;
        }
        trailer_line_has_colon_ = false;
        trailer_line_empty_ = true;
        state_ = State::kTrailerLine;
        [[fallthrough]];
      case State::kTrailerLine:
        if (++trailer_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        keep_trailer_byte(c);
        if (c == '\r') {
          if (!trailer_line_has_colon_) return fail("invalid trailer field");
          state_ = State::kTrailerLf;
        } else if (!trailer_line_has_colon_) {
          if (c == ':' && !trailer_line_empty_) trailer_line_has_colon_ = true;
          else if (!is_tchar(c)) return fail("invalid trailer field name");
          trailer_line_empty_ = false;
        } else if (!(c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) ||
                     static_cast<unsigned char>(c) >= 0x80)) {
          return fail("control character in trailer field");
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail("bare CR in trailer");
        keep_trailer_byte(c);
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return fail("bare CR after last chunk");
        state_ = State::kDone;
        return Result::kDone;
      default:
        return fail("internal decoder state");
    }
  }
  if (state_ == State::kDone) return Result::kDone;
  if (state_ == State::kError) return Result::kError;
  return Result::kNeedMore;
}

}  // namespace citadel::http::http1
