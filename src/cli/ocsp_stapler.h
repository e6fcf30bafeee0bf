// OCSP stapling with fetched responses: for each listener certificate without an `ocsp` file
// whose certificate names a responder, the control thread asks the responder (HTTP client on its
// own loop), checks the answer (http/transport/ocsp.h) and has the server publish a snapshot
// whose TLS contexts staple it. A response is refreshed halfway to its nextUpdate (at most every
// 12 hours, at least a minute apart); failures retry from one minute, doubling to an hour,
// while the last good response keeps being stapled until it expires. A certificate file that
// changes (a renewal) drops its response and fetches one for the new certificate.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/file_stamp.h"
#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/client/http_client.h"
#include "observe/log.h"

namespace citadel::cli {

using OcspStaples = std::map<std::string, std::string>;  // certificate file -> DER response

class OcspStapler {
 public:
  using Publish = std::function<void(std::shared_ptr<const OcspStaples>)>;
  OcspStapler(core::EventLoop& loop, http::client::HttpClient& client, observe::ErrorLog& log,
              Publish publish);
  ~OcspStapler();

  // The certificate files to staple for (listener certificates without an `ocsp` file). New
  // ones are fetched now; removed ones are forgotten; changed ones refetched.
  void set_certificates(const std::vector<std::string>& files);

 private:
  struct Entry {
    OcspStapler* owner = nullptr;
    std::string file;
    FileStamp stamp;  // the certificate file when fetched
    core::Timer timer;
    http::client::RequestHandle request;
    uint64_t backoff_ms = 0;
    uint64_t expires_ms = 0;  // the stapled response's nextUpdate (loop time); 0: none
    bool unsupported = false;  // no responder named: nothing to do until the file changes
    Entry() : timer(&OcspStapler::on_timer, this) {}
  };
  static void on_timer(void* entry);
  void fetch(Entry& e);
  void retry(Entry& e, const std::string& why);
  void store(const std::string& file, const std::string* der);  // nullptr: drop

  core::EventLoop& loop_;
  http::client::HttpClient& client_;
  observe::ErrorLog& log_;
  Publish publish_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::shared_ptr<const OcspStaples> staples_ = std::make_shared<OcspStaples>();
};

}  // namespace citadel::cli
