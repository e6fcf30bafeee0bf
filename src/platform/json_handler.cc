#include "platform/json_handler.h"

#include "crypto/jwt.h"
#include "platform/form.h"

namespace citadel::platform {

namespace json = boost::json;

std::string printable(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  }
  return out;
}

void JsonHandler::begin(pipeline::HandlerContext& ctx, bool end_stream, std::string_view allow) {
  ctx_ = &ctx;
  const http::RequestHead& req = ctx.request();
  std::string_view method = req.method;
  bool allowed = false;
  http::for_each_list_element(allow,
                              [&](std::string_view m) { allowed = allowed || m == method; });
  if (!allowed) {
    ctx.response_head().headers.add("Allow", allow);
    return error(405, "invalid_request", std::string(method) + " is not allowed here");
  }
  if (method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE") {
    if (req.framing == http::BodyFraming::kContentLength && req.content_length > kMaxBody) {
      return error(413, "invalid_request", "the body is over 64 KiB");
    }
    if (end_stream) {
      dispatched_ = true;
      dispatch();
    }
    return;  // the body follows
  }
  if (!end_stream) ctx.pause_request_body();  // a GET's body is not read
  dispatched_ = true;
  dispatch();
}

void JsonHandler::on_request_data(pipeline::HandlerContext&, std::string_view data, bool end) {
  if (done_ || dispatched_ || ctx_ == nullptr) return;
  if (body_.size() + data.size() > kMaxBody) {
    return error(413, "invalid_request", "the body is over 64 KiB");
  }
  body_.append(data);
  if (end) {
    dispatched_ = true;
    dispatch();
  }
}

void JsonHandler::reply(int status, std::string body, bool no_store) {
  if (done_) return;
  done_ = true;
  out_ = std::move(body);
  http::ResponseHead& resp = ctx_->response_head();
  resp.status = status;
  resp.headers.add("Content-Type", "application/json");
  // Tokens and personal data: never kept by a cache (RFC 6749, 5.1).
  if (no_store) {
    resp.headers.add("Cache-Control", "no-store");
    resp.headers.add("Pragma", "no-cache");
  }
  resp.framing = http::BodyFraming::kContentLength;
  resp.content_length = out_.size();
  if (ctx_->request().is_head) {
    ctx_->send_response_headers(true);
    return;
  }
  ctx_->send_response_headers(false);
  ctx_->send_response_data(out_, true);
}

void JsonHandler::error(int status, std::string_view code, std::string_view description) {
  json::object e{{"error", code}, {"error_description", description}};
  if (status == 401 && bearer_challenge_) {
    std::string_view challenge = code == "invalid_token"
                                     ? std::string_view("Bearer error=\"invalid_token\"")
                                     : std::string_view("Bearer");
    ctx_->response_head().headers.add("WWW-Authenticate", challenge);
  }
  reply(status, json::serialize(e));
}

bool JsonHandler::read_json(json::object& out) {
  if (!has_media_type(ctx_->request(), "application/json")) {
    error(415, "invalid_request", "expected Content-Type: application/json");
    return false;
  }
  json::error_code ec;
  json::value v = json::parse(body_, ec);
  if (ec || !v.is_object() || !crypto::json_without_duplicate_members(body_)) {
    error(400, "invalid_request", "expected one JSON object (no member given twice)");
    return false;
  }
  out = std::move(v.as_object());
  return true;
}

void JsonHandler::store_unavailable(const store::SqlResult& r, observe::Counter* errors,
                                    const char* what) {
  errors->add(ctx_->worker().index());
  ctx_->worker().log().log(observe::LogLevel::kError, "%s: store: %s", what,
                           printable(r.message, 300).c_str());
  ctx_->response_head().headers.add("Retry-After", "1");
  error(503, "temporarily_unavailable", "the store cannot answer now");
}

std::string JsonHandler::member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace citadel::platform
