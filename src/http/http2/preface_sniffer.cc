#include "http/http2/preface_sniffer.h"

#include <sys/epoll.h>

#include <utility>

#include "http/http2/server_connection.h"

namespace citadel::http::http2 {

PrefaceSniffer::PrefaceSniffer(SocketTransport transport, const ConnectionInfo& info,
                               core::EventLoop& loop, ConnectionOwner& owner, SniffOwner& done,
                               uint64_t timeout_ms)
    : transport_(std::move(transport)), info_(info), loop_(loop), owner_(owner), done_(done),
      timeout_ms_(timeout_ms), timer_(&PrefaceSniffer::on_timeout, this) {}

PrefaceSniffer::~PrefaceSniffer() { loop_.timers().cancel(timer_); }

bool PrefaceSniffer::start() {
  if (!transport_.register_with(loop_, *this).ok()) return false;
  if (timeout_ms_ > 0) loop_.arm(timer_, timeout_ms_);
  return true;
}

void PrefaceSniffer::on_io(uint32_t events) {
  if (closed_ || taken_) return;
  events = transport_.ready(events);
  if ((events & EPOLLERR) != 0) {
    close("socket error");
    return;
  }
  while (bytes_.size() < kClientPreface.size()) {
    char buf[kClientPreface.size()];
    size_t n = 0;
    ReadResult r = transport_.read_into(buf, kClientPreface.size() - bytes_.size(), n);
    bytes_.append(buf, n);
    // Decided as soon as a byte differs from the preface (a request line) or it is complete.
    if (kClientPreface.compare(0, bytes_.size(), bytes_) != 0) {
      loop_.timers().cancel(timer_);
      done_.on_sniffed(*this, false);
      return;
    }
    if (r == ReadResult::kEof || r == ReadResult::kError) {
      close(r == ReadResult::kEof ? "peer closed" : "read error");
      return;
    }
    if (r == ReadResult::kDrained) return;
  }
  loop_.timers().cancel(timer_);
  done_.on_sniffed(*this, true);
}

SocketTransport PrefaceSniffer::take_transport() {
  taken_ = true;
  return std::move(transport_);  // still registered for us: the codec rebinds it
}

void PrefaceSniffer::on_timeout(void* self) {
  static_cast<PrefaceSniffer*>(self)->close("header timeout");
}

void PrefaceSniffer::close(std::string_view) {
  if (closed_ || taken_) return;
  closed_ = true;
  loop_.timers().cancel(timer_);
  transport_.close(loop_);
  owner_.on_connection_closed(*this);
}

}  // namespace citadel::http::http2
