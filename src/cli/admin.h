// The admin listener's request handling: /metrics, /healthz, /readyz, /config, /clusters and
// POST /config/reload. Runs on the control thread's loop, through the same HTTP/1.1 codec as
// the data plane.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/arena.h"
#include "http/stream.h"

namespace citadel::cli {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// What the admin endpoints read and do; implemented by the Server.
class AdminBackend {
 public:
  virtual std::string metrics_text() = 0;
  virtual bool ready() const = 0;
  virtual std::string config_json() = 0;
  virtual std::string clusters_json() = 0;
  // Returns 200 and a summary, or 400 and the errors.
  virtual AdminResponse reload() = 0;

 protected:
  ~AdminBackend() = default;
};

class AdminStreamFactory final : public http::StreamFactory {
 public:
  explicit AdminStreamFactory(AdminBackend& backend) : backend_(backend) {}
  ~AdminStreamFactory();
  http::StreamHandler* new_stream(http::ServerStream& downstream) override;
  void recycle(class AdminStream* s) { free_.push_back(s); }

 private:
  AdminBackend& backend_;
  std::vector<class AdminStream*> free_;
};

}  // namespace citadel::cli
