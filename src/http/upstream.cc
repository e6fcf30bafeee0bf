#include "http/upstream.h"

namespace citadel::http {

std::string_view failure_name(UpstreamFailure kind) {
  switch (kind) {
    case UpstreamFailure::kConnectFailure: return "connect_failure";
    case UpstreamFailure::kReset: return "reset_before_response";
    case UpstreamFailure::kResetAfterHead: return "reset_in_body";
    case UpstreamFailure::kProtocolError: return "protocol_error";
    case UpstreamFailure::kRequestFraming: return "request_framing";
  }
  return "unknown";
}

}  // namespace citadel::http
