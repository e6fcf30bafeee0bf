#include "filters/compress/compress_filter.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <utility>

#include "http/headers.h"

namespace citadel::filters {

std::string_view encoding_token(Encoding e) {
  switch (e) {
    case Encoding::kGzip: return "gzip";
    case Encoding::kBrotli: return "br";
    case Encoding::kZstd: return "zstd";
    case Encoding::kIdentity: break;
  }
  return "identity";
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A q-value ("0", "0.5", "1", "1.000") in thousandths; -1 when malformed.
int parse_q(std::string_view v) {
  v = trim(v);
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return -1;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return q;
  if (v[1] != '.' || v.size() > 5) return -1;
  int scale = 100;
  for (size_t i = 2; i < v.size(); ++i, scale /= 10) {
    if (v[i] < '0' || v[i] > '9') return -1;
    q += (v[i] - '0') * scale;
  }
  return q > 1000 ? -1 : q;
}

// --- encoders ----------------------------------------------------------------------------------

// One response's compressor. compress() appends to `out` what `in` becomes; each call flushes
// (the client gets every piece without waiting for the next), and `finish` ends the stream.
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual bool compress(std::string_view in, bool finish, std::string& out) = 0;
};

constexpr size_t kOutChunk = 16 * 1024;

class GzipEncoder final : public Encoder {
 public:
  explicit GzipEncoder(int level) {
    // windowBits 15 + 16: a gzip wrapper; memLevel 8 as zlib's default.
    ok_ = deflateInit2(&zs_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~GzipEncoder() override {
    if (ok_) deflateEnd(&zs_);
  }
  bool ok() const { return ok_; }
  bool compress(std::string_view in, bool finish, std::string& out) override {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    const int flush = finish ? Z_FINISH : Z_SYNC_FLUSH;
    while (true) {
      const size_t at = out.size();
      out.resize(at + kOutChunk);
      zs_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      zs_.avail_out = static_cast<uInt>(kOutChunk);
      const int r = deflate(&zs_, flush);
      out.resize(at + kOutChunk - zs_.avail_out);
      if (r == Z_STREAM_ERROR) return false;
      if (finish ? r == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) return true;
    }
  }

 private:
  z_stream zs_{};
  bool ok_ = false;
};

class BrotliEncoder final : public Encoder {
 public:
  explicit BrotliEncoder(int level) : st_(BrotliEncoderCreateInstance(nullptr, nullptr, nullptr)) {
    if (st_ != nullptr) {
      BrotliEncoderSetParameter(st_, BROTLI_PARAM_QUALITY, static_cast<uint32_t>(level));
      // A 1 MiB window: the usual for web content, at a bounded memory per response.
      BrotliEncoderSetParameter(st_, BROTLI_PARAM_LGWIN, 20);
    }
  }
  ~BrotliEncoder() override {
    if (st_ != nullptr) BrotliEncoderDestroyInstance(st_);
  }
  bool ok() const { return st_ != nullptr; }
  bool compress(std::string_view in, bool finish, std::string& out) override {
    size_t avail_in = in.size();
    const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
    const BrotliEncoderOperation op = finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH;
    while (true) {
      const size_t at = out.size();
      out.resize(at + kOutChunk);
      size_t avail_out = kOutChunk;
      uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data() + at);
      if (!BrotliEncoderCompressStream(st_, op, &avail_in, &next_in, &avail_out, &next_out,
                                       nullptr)) {
        return false;
      }
      out.resize(at + kOutChunk - avail_out);
      const bool drained = avail_in == 0 && !BrotliEncoderHasMoreOutput(st_);
      if (drained && (!finish || BrotliEncoderIsFinished(st_))) return true;
    }
  }

 private:
  BrotliEncoderState* st_;
};

class ZstdEncoder final : public Encoder {
 public:
  explicit ZstdEncoder(int level) : cctx_(ZSTD_createCCtx()) {
    if (cctx_ != nullptr) ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
  }
  ~ZstdEncoder() override { ZSTD_freeCCtx(cctx_); }
  bool ok() const { return cctx_ != nullptr; }
  bool compress(std::string_view in, bool finish, std::string& out) override {
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    const ZSTD_EndDirective mode = finish ? ZSTD_e_end : ZSTD_e_flush;
    while (true) {
      const size_t at = out.size();
      out.resize(at + kOutChunk);
      ZSTD_outBuffer output{out.data() + at, kOutChunk, 0};
      const size_t left = ZSTD_compressStream2(cctx_, &output, &input, mode);
      out.resize(at + output.pos);
      if (ZSTD_isError(left)) return false;
      if (left == 0 && input.pos == input.size) return true;
    }
  }

 private:
  ZSTD_CCtx* cctx_;
};

std::unique_ptr<Encoder> make_encoder(Encoding e, const CompressOptions& o) {
  switch (e) {
    case Encoding::kGzip: {
      auto g = std::make_unique<GzipEncoder>(o.gzip_level);
      if (g->ok()) return g;
      break;
    }
    case Encoding::kBrotli: {
      auto b = std::make_unique<BrotliEncoder>(o.brotli_level);
      if (b->ok()) return b;
      break;
    }
    case Encoding::kZstd: {
      auto z = std::make_unique<ZstdEncoder>(o.zstd_level);
      if (z->ok()) return z;
      break;
    }
    case Encoding::kIdentity:
      break;
  }
  return nullptr;
}

bool lists(std::string_view value, std::string_view token) {
  bool found = false;
  http::for_each_list_element(value, [&](std::string_view e) {
    found = found || http::iequals(e, token);
  });
  return found;
}

class CompressFilter final : public pipeline::Filter {
 public:
  explicit CompressFilter(const CompressOptions& o) : o_(o) {}

  pipeline::FilterStatus on_request_headers(pipeline::FilterContext& ctx, http::RequestHead& head,
                                            bool) override {
    head_request_ = head.is_head;
    // Several Accept-Encoding lines are one list (RFC 9110 section 5.3).
    std::string_view all;
    for (const auto& f : head.headers.fields()) {
      if (!http::iequals(f.name, "accept-encoding")) continue;
      all = all.empty() ? f.value : ctx.arena().concat({all, ", ", f.value});
    }
    chosen_ = all.empty() ? Encoding::kIdentity : negotiate(all, o_.preference);
    return pipeline::FilterStatus::kContinue;
  }

  pipeline::FilterStatus on_response_headers(pipeline::FilterContext& ctx, http::ResponseHead& h,
                                             bool end) override {
    const int s = h.status;
    if (s < 200 || s == 204 || s == 206 || s == 304) return pipeline::FilterStatus::kContinue;
    const http::HeaderField* type = h.headers.find("content-type");
    if (type == nullptr || !o_.compressible(type->value)) return pipeline::FilterStatus::kContinue;
    if (h.framing == http::BodyFraming::kContentLength && h.content_length < o_.min_length) {
      return pipeline::FilterStatus::kContinue;
    }
    add_vary(ctx, h);
    if (chosen_ == Encoding::kIdentity || end || head_request_) {
      return pipeline::FilterStatus::kContinue;
    }
    const http::HeaderField* ce = h.headers.find("content-encoding");
    if (ce != nullptr && !http::iequals(ce->value, "identity")) {
      return pipeline::FilterStatus::kContinue;
    }
    const http::HeaderField* cc = h.headers.find("cache-control");
    if (cc != nullptr && lists(cc->value, "no-transform")) return pipeline::FilterStatus::kContinue;
    // Trailers would come after the compressed stream's end, which this filter could not write
    // before them: such a response goes as it is.
    if (h.headers.find("trailer") != nullptr) return pipeline::FilterStatus::kContinue;
    encoder_ = make_encoder(chosen_, o_);
    if (!encoder_) return pipeline::FilterStatus::kContinue;
    h.headers.remove("content-encoding");
    h.headers.add("Content-Encoding", encoding_token(chosen_));
    h.framing = http::BodyFraming::kChunked;  // the compressed length is not known yet
    h.content_length = 0;
    if (const http::HeaderField* etag = h.headers.find("etag")) {
      // The bytes differ from the identity representation's: a strong validator would lie.
      if (!etag->value.empty() && etag->value.front() == '"') {
        std::string_view weak = ctx.arena().concat({"W/", etag->value});
        h.headers.set("ETag", weak);
      }
    }
    return pipeline::FilterStatus::kContinue;
  }

  pipeline::FilterStatus on_response_data(pipeline::FilterContext&, pipeline::Body& body,
                                          bool end) override {
    if (!encoder_) return pipeline::FilterStatus::kContinue;
    out_.clear();
    if (!encoder_->compress(body.view(), end, out_)) {
      // Out of memory inside the compressor: nothing sensible can follow what was sent.
      encoder_.reset();
      body.clear();
      return pipeline::FilterStatus::kContinue;
    }
    body.replace(out_);
    if (end) encoder_.reset();  // its memory goes now, not with the stream
    return pipeline::FilterStatus::kContinue;
  }

  void on_reset() override { encoder_.reset(); }

 private:
  static void add_vary(pipeline::FilterContext& ctx, http::ResponseHead& h) {
    const http::HeaderField* vary = h.headers.find("vary");
    if (vary == nullptr) {
      h.headers.add("Vary", "Accept-Encoding");
    } else if (!lists(vary->value, "*") && !lists(vary->value, "accept-encoding")) {
      h.headers.set("Vary", ctx.arena().concat({vary->value, ", Accept-Encoding"}));
    }
  }

  const CompressOptions& o_;
  Encoding chosen_ = Encoding::kIdentity;
  bool head_request_ = false;
  std::unique_ptr<Encoder> encoder_;
  std::string out_;
};

bool parse_encoding(std::string_view s, Encoding& e) {
  if (http::iequals(s, "gzip") || http::iequals(s, "x-gzip")) e = Encoding::kGzip;
  else if (http::iequals(s, "br")) e = Encoding::kBrotli;
  else if (http::iequals(s, "zstd")) e = Encoding::kZstd;
  else return false;
  return true;
}

}  // namespace

Encoding negotiate(std::string_view accept_encoding, const std::vector<Encoding>& preference) {
  // q-values per coding as the client gave them (-1: not named), and the one of `*`.
  int q[4] = {-1, -1, -1, -1};
  int star = -1;
  http::for_each_list_element(accept_encoding, [&](std::string_view element) {
    std::string_view token = element;
    int value = 1000;
    const size_t semi = element.find(';');
    if (semi != std::string_view::npos) {
      token = trim(element.substr(0, semi));
      std::string_view params = element.substr(semi + 1);
      // "q=0.5" (other parameters are not defined for Accept-Encoding and are ignored).
      const size_t eq = params.find('=');
      if (eq != std::string_view::npos && http::iequals(trim(params.substr(0, eq)), "q")) {
        value = parse_q(params.substr(eq + 1));
        if (value < 0) value = 0;  // a malformed q-value makes the coding unacceptable
      }
    }
    Encoding e;
    if (token == "*") star = value;
    else if (parse_encoding(token, e)) q[static_cast<int>(e)] = value;
  });
  int best_q = 0;
  Encoding best = Encoding::kIdentity;
  for (Encoding e : preference) {
    const int v = q[static_cast<int>(e)] >= 0 ? q[static_cast<int>(e)] : star;
    if (v > best_q) {  // ties keep the server's earlier choice
      best_q = v;
      best = e;
    }
  }
  return best;
}

bool CompressOptions::compressible(std::string_view content_type) const {
  const size_t semi = content_type.find(';');
  const std::string_view media = trim(content_type.substr(0, semi));
  for (const auto& t : types) {
    if (t.size() >= 2 && t.compare(t.size() - 2, 2, "/*") == 0) {
      const std::string_view major(t.data(), t.size() - 1);  // "text/"
      if (media.size() > major.size() && http::iequals(media.substr(0, major.size()), major)) {
        return true;
      }
    } else if (http::iequals(media, t)) {
      return true;
    }
  }
  return false;
}

pipeline::Filter* CompressFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<CompressFilter>(arena, options_);
}

std::unique_ptr<pipeline::FilterFactory> CompressFilterConfig::parse(
    const core::ConfigNode& node, pipeline::BuildContext&) const {
  CompressOptions o;
  if (node.defined()) {
    if (!node.expect_map()) return nullptr;
    node.allow_keys({"encodings", "min_length", "types", "levels"});
    core::ConfigNode enc = node["encodings"];
    if (enc.defined()) {
      o.preference.clear();
      for (const auto& name : enc.str_list()) {
        Encoding e;
        if (!parse_encoding(name, e)) {
          enc.error("unknown encoding \"" + name + "\" (expected zstd, br, gzip)");
          continue;
        }
        o.preference.push_back(e);
      }
      if (o.preference.empty()) enc.error("at least one encoding is needed");
    }
    o.min_length = node["min_length"].size_bytes(o.min_length);
    if (node["types"].defined()) {
      o.types = node["types"].str_list();
      for (const auto& t : o.types) {
        if (t.find('/') == std::string::npos || t.find(';') != std::string::npos) {
          node["types"].error("expected media types such as text/html or text/*, got \"" + t +
                              "\"");
        }
      }
    }
    core::ConfigNode lv = node["levels"];
    if (lv.defined() && lv.expect_map()) {
      lv.allow_keys({"gzip", "br", "zstd"});
      o.gzip_level = static_cast<int>(lv["gzip"].integer(o.gzip_level, 1, 9));
      o.brotli_level = static_cast<int>(lv["br"].integer(o.brotli_level, 0, 11));
      o.zstd_level = static_cast<int>(lv["zstd"].integer(o.zstd_level, 1, 19));
    }
  }
  return std::make_unique<CompressFilterFactory>(std::move(o));
}

}  // namespace citadel::filters
