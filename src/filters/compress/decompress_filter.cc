#include "filters/compress/decompress_filter.h"

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include <string>

#include "http/headers.h"

namespace citadel::filters {
namespace {

constexpr uint64_t kOutChunk = 16 * 1024;
// The ratio limit applies once this much has been decoded: a small body of repeated bytes
// compresses far beyond any sane ratio and is no attack.
constexpr uint64_t kRatioGrace = 64 * 1024;

enum class Decoded { kOk, kTooLarge, kInvalid };

// Room for the next step of output: a chunk, but never more than one byte past `budget`, so
// that passing the budget is seen without decoding (or allocating) further.
size_t room(const std::string& out, uint64_t budget) {
  const uint64_t left = budget + 1 - out.size();
  return left < kOutChunk ? static_cast<size_t>(left) : kOutChunk;
}

// Decodes into `out`, stopping as soon as it holds more than `budget` bytes (kTooLarge).
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual Decoded decode(std::string_view in, bool end, std::string& out, uint64_t budget) = 0;
};

class InflateDecoder final : public Decoder {
 public:
  InflateDecoder() { ok_ = inflateInit2(&zs_, 15 + 32) == Z_OK; }  // gzip or zlib wrapper
  ~InflateDecoder() override {
    if (ok_) inflateEnd(&zs_);
  }
  bool ok() const { return ok_; }
  Decoded decode(std::string_view in, bool end, std::string& out, uint64_t budget) override {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    while (!done_) {
      const size_t at = out.size();
      const size_t n = room(out, budget);
      out.resize(at + n);
      zs_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      zs_.avail_out = static_cast<uInt>(n);
      const int r = inflate(&zs_, Z_NO_FLUSH);
      out.resize(at + n - zs_.avail_out);
      if (out.size() > budget) return Decoded::kTooLarge;
      if (r == Z_STREAM_END) {
        done_ = true;
        break;
      }
      if (r == Z_BUF_ERROR) break;  // no progress without more input
      if (r != Z_OK) return Decoded::kInvalid;
      if (zs_.avail_in == 0 && zs_.avail_out != 0) break;  // input used, nothing held back
    }
    if (done_ && zs_.avail_in > 0) return Decoded::kInvalid;  // bytes after the stream's end
    if (end && !done_) return Decoded::kInvalid;              // cut short
    return Decoded::kOk;
  }

 private:
  z_stream zs_{};
  bool ok_ = false;
  bool done_ = false;
};

class BrotliDecoder final : public Decoder {
 public:
  BrotliDecoder() : st_(BrotliDecoderCreateInstance(nullptr, nullptr, nullptr)) {}
  ~BrotliDecoder() override {
    if (st_ != nullptr) BrotliDecoderDestroyInstance(st_);
  }
  bool ok() const { return st_ != nullptr; }
  Decoded decode(std::string_view in, bool end, std::string& out, uint64_t budget) override {
    size_t avail_in = in.size();
    const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
    while (true) {
      const size_t at = out.size();
      const size_t n = room(out, budget);
      out.resize(at + n);
      size_t avail_out = n;
      uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data() + at);
      const BrotliDecoderResult r =
          BrotliDecoderDecompressStream(st_, &avail_in, &next_in, &avail_out, &next_out, nullptr);
      out.resize(at + n - avail_out);
      if (out.size() > budget) return Decoded::kTooLarge;
      if (r == BROTLI_DECODER_RESULT_ERROR) return Decoded::kInvalid;
      if (r == BROTLI_DECODER_RESULT_SUCCESS) {
        done_ = true;
        if (avail_in > 0) return Decoded::kInvalid;
        break;
      }
      if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) break;
      // NEEDS_MORE_OUTPUT: go round with more room.
    }
    if (end && !done_) return Decoded::kInvalid;
    return Decoded::kOk;
  }

 private:
  BrotliDecoderState* st_;
  bool done_ = false;
};

class ZstdDecoder final : public Decoder {
 public:
  ZstdDecoder() : d_(ZSTD_createDCtx()) {
    // A frame may ask for a window of up to 2 GiB; 8 MiB (the default limit, said explicitly)
    // bounds what one request can make this process allocate.
    if (d_ != nullptr) ZSTD_DCtx_setParameter(d_, ZSTD_d_windowLogMax, 23);
  }
  ~ZstdDecoder() override { ZSTD_freeDCtx(d_); }
  bool ok() const { return d_ != nullptr; }
  Decoded decode(std::string_view in, bool end, std::string& out, uint64_t budget) override {
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    while (true) {
      const size_t at = out.size();
      const size_t n = room(out, budget);
      out.resize(at + n);
      ZSTD_outBuffer output{out.data() + at, n, 0};
      const size_t r = ZSTD_decompressStream(d_, &output, &input);
      out.resize(at + output.pos);
      if (out.size() > budget) return Decoded::kTooLarge;
      if (ZSTD_isError(r)) return Decoded::kInvalid;
      last_ = r;
      // Input used up and the output not full: nothing more to flush for now.
      if (input.pos == input.size && output.pos < n) break;
    }
    if (end && last_ != 0) return Decoded::kInvalid;  // a frame not finished
    return Decoded::kOk;
  }

 private:
  ZSTD_DCtx* d_;
  size_t last_ = 1;  // nothing decoded yet: an empty body is not a frame
};

std::unique_ptr<Decoder> make_decoder(std::string_view coding) {
  if (http::iequals(coding, "gzip") || http::iequals(coding, "x-gzip") ||
      http::iequals(coding, "deflate")) {
    auto d = std::make_unique<InflateDecoder>();
    if (d->ok()) return d;
  } else if (http::iequals(coding, "br")) {
    auto d = std::make_unique<BrotliDecoder>();
    if (d->ok()) return d;
  } else if (http::iequals(coding, "zstd")) {
    auto d = std::make_unique<ZstdDecoder>();
    if (d->ok()) return d;
  }
  return nullptr;
}

class DecompressFilter final : public pipeline::Filter {
 public:
  explicit DecompressFilter(const DecompressOptions& o) : o_(o) {}

  pipeline::FilterStatus on_request_headers(pipeline::FilterContext&, http::RequestHead& head,
                                            bool end) override {
    if (end) return pipeline::FilterStatus::kContinue;
    const http::HeaderField* ce = head.headers.find("content-encoding");
    if (ce == nullptr) return pipeline::FilterStatus::kContinue;
    decoder_ = make_decoder(ce->value);  // a list of codings, or an unknown one, passes as is
    if (!decoder_) return pipeline::FilterStatus::kContinue;
    head.headers.remove("content-encoding");
    head.framing = http::BodyFraming::kChunked;  // the decoded length is not known yet
    head.content_length = 0;
    return pipeline::FilterStatus::kContinue;
  }

  pipeline::FilterStatus on_request_data(pipeline::FilterContext& ctx, pipeline::Body& body,
                                         bool end) override {
    if (!decoder_) return pipeline::FilterStatus::kContinue;
    in_total_ += body.size();
    // What may be decoded in all: max_size, and max_ratio times what came in (but always the
    // first 64 KiB).
    uint64_t allowed = in_total_ * o_.max_ratio;
    if (allowed < kRatioGrace) allowed = kRatioGrace;
    if (allowed > o_.max_size) allowed = o_.max_size;
    const uint64_t budget = allowed > out_total_ ? allowed - out_total_ : 0;
    out_.clear();
    const Decoded d = decoder_->decode(body.view(), end, out_, budget);
    if (d != Decoded::kOk) {
      decoder_.reset();
      out_.clear();
      out_.shrink_to_fit();
      if (d == Decoded::kTooLarge) {
        ctx.send_local_reply(413, "decompressed request body too large\n");
      } else {
        ctx.send_local_reply(400, "invalid request body encoding\n");
      }
      return pipeline::FilterStatus::kStop;
    }
    out_total_ += out_.size();
    body.replace(out_);
    if (end) decoder_.reset();
    return pipeline::FilterStatus::kContinue;
  }

  void on_reset() override { decoder_.reset(); }

 private:
  const DecompressOptions& o_;
  std::unique_ptr<Decoder> decoder_;
  std::string out_;
  uint64_t in_total_ = 0;
  uint64_t out_total_ = 0;
};

}  // namespace

pipeline::Filter* DecompressFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<DecompressFilter>(arena, options_);
}

std::unique_ptr<pipeline::FilterFactory> DecompressFilterConfig::parse(
    const core::ConfigNode& node, pipeline::BuildContext&) const {
  DecompressOptions o;
  if (node.defined()) {
    if (!node.expect_map()) return nullptr;
    node.allow_keys({"max_size", "max_ratio"});
    o.max_size = node["max_size"].size_bytes(o.max_size);
    if (o.max_size == 0) node["max_size"].error("must be above 0");
    o.max_ratio = static_cast<uint64_t>(node["max_ratio"].integer(100, 1, 100000));
  }
  return std::make_unique<DecompressFilterFactory>(o);
}

}  // namespace citadel::filters
