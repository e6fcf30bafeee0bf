#include "store/redis_client.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <utility>

namespace citadel::store {

RedisValue redis_value_from(const void* r) {
  const auto* reply = static_cast<const redisReply*>(r);
  RedisValue v;
  switch (reply->type) {
    case REDIS_REPLY_STRING:
      v.type = RedisValue::Type::kString;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = RedisValue::Type::kStatus;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = RedisValue::Type::kError;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = RedisValue::Type::kInteger;
      v.integer = reply->integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = RedisValue::Type::kArray;
      v.elements.reserve(reply->elements);
      for (size_t i = 0; i < reply->elements; ++i) {
        v.elements.push_back(redis_value_from(reply->element[i]));
      }
      break;
    default:
      v.type = RedisValue::Type::kNil;
  }
  return v;
}

RedisClient::RedisClient(core::EventLoop& loop, Options options)
    : loop_(loop),
      options_(std::move(options)),
      timeout_timer_(&RedisClient::on_timer, this),
      reconnect_timer_(&RedisClient::on_reconnect_timer, this) {}

RedisClient::~RedisClient() {
  started_ = false;  // no reconnection from the callbacks below
  for (Pending* p : pending_) p->finished = true;  // dropped, not called
  if (ac_ != nullptr) redisAsyncFree(ac_);  // its reply callbacks free the Pending entries
  for (Pending* p : failed_) delete p;
  loop_.timers().cancel(timeout_timer_);
  loop_.timers().cancel(reconnect_timer_);
}

void RedisClient::start() {
  if (started_) return;
  started_ = true;
  connect();
}

void RedisClient::connect() {
  ac_ = options_.host.rfind('/', 0) == 0 ? redisAsyncConnectUnix(options_.host.c_str())
                                         : redisAsyncConnect(options_.host.c_str(), options_.port);
  if (ac_ == nullptr || ac_->err != 0) {
    if (ac_ != nullptr) redisAsyncFree(ac_);
    ac_ = nullptr;
    retry_later();
    return;
  }
  ac_->data = this;
  ac_->ev.data = this;
  ac_->ev.addRead = &RedisClient::noop;  // always registered for reads
  ac_->ev.delRead = &RedisClient::noop;
  ac_->ev.addWrite = &RedisClient::add_write;
  ac_->ev.delWrite = &RedisClient::del_write;
  ac_->ev.cleanup = &RedisClient::cleanup;
  redisAsyncSetConnectCallback(ac_, &RedisClient::on_connect);
  redisAsyncSetDisconnectCallback(ac_, &RedisClient::on_disconnect);
  fd_ = ac_->c.fd;
  if (!loop_.add(fd_, this, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
    redisAsyncFree(ac_);  // cleanup() clears ac_ and fd_
    retry_later();
    return;
  }
  // hiredis wants to know when the connect completes: it asked for a write (add_write).
  if (!options_.password.empty()) {
    // First on the connection, before anything a caller sends.
    const char* argv[] = {"AUTH", options_.password.c_str()};
    const size_t lens[] = {4, options_.password.size()};
    auto* p = new Pending{this, [this](RedisResult& r) {
                            // Inside a hiredis callback: the graceful disconnect.
                            if (!r.ok() && ac_ != nullptr) redisAsyncDisconnect(ac_);
                          },
                          loop_.now_ms() + options_.timeout_ms};
    if (redisAsyncCommandArgv(ac_, &RedisClient::on_reply, p, 2, argv, lens) != REDIS_OK) {
      delete p;
    } else {
      pending_.push_back(p);
    }
  }
}

void RedisClient::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (status != REDIS_OK) {
    self->connected_ = false;  // hiredis frees the context after this; cleanup() follows
    self->retry_later();
    return;
  }
  self->connected_ = true;
  self->backoff_ms_ = 0;
}

void RedisClient::on_disconnect(const redisAsyncContext* ac, int) {
  auto* self = static_cast<RedisClient*>(ac->data);
  self->connected_ = false;
  self->retry_later();
}

void RedisClient::cleanup(void* arg) {
  auto* self = static_cast<RedisClient*>(arg);
  if (self->fd_ >= 0) self->loop_.remove(self->fd_);
  self->fd_ = -1;
  self->ac_ = nullptr;
  self->connected_ = false;
  self->want_write_ = false;
}

void RedisClient::add_write(void* arg) {
  auto* self = static_cast<RedisClient*>(arg);
  self->want_write_ = true;
  self->loop_.schedule(self);  // flushed after this batch of events: commands pipeline
}

void RedisClient::del_write(void* arg) { static_cast<RedisClient*>(arg)->want_write_ = false; }

void RedisClient::on_io(uint32_t events) {
  if (ac_ == nullptr) return;
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0) {
    // Edge-triggered: hiredis reads once per call, so read on while the socket holds more.
    for (int i = 0; i < 64 && ac_ != nullptr; ++i) {
      redisAsyncHandleRead(ac_);
      int available = 0;
      if (ac_ == nullptr || ::ioctl(fd_, FIONREAD, &available) != 0 || available <= 0) break;
    }
  }
  if (ac_ != nullptr && (events & EPOLLOUT) != 0 && want_write_) run_task();
}

void RedisClient::run_task() {
  // Failures decided inside command() are delivered here, outside the caller's call.
  while (!failed_.empty()) {
    Pending* p = failed_.front();
    failed_.pop_front();
    RedisResult r;
    r.error = RedisError::kUnavailable;
    r.message = "not connected to Redis";
    Callback done = std::move(p->done);
    delete p;
    done(r);
  }
  // hiredis writes once per call; a socket that takes no more says so with EPOLLOUT later.
  for (int i = 0; i < 8 && ac_ != nullptr && want_write_; ++i) redisAsyncHandleWrite(ac_);
}

void RedisClient::command(std::vector<std::string> args, Callback done) {
  auto* p = new Pending{this, std::move(done), loop_.now_ms() + options_.timeout_ms};
  if (!connected_ || ac_ == nullptr || args.empty() || pending_.size() >= options_.max_pending) {
    failed_.push_back(p);
    loop_.schedule(this);
    return;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAsyncCommandArgv(ac_, &RedisClient::on_reply, p, static_cast<int>(args.size()),
                            argv.data(), lens.data()) != REDIS_OK) {
    failed_.push_back(p);
    loop_.schedule(this);
    return;
  }
  pending_.push_back(p);
  if (!timeout_timer_.armed()) loop_.arm(timeout_timer_, options_.timeout_ms);
}

void RedisClient::on_reply(redisAsyncContext*, void* reply, void* privdata) {
  auto* p = static_cast<Pending*>(privdata);
  RedisClient* self = p->owner;
  auto it = std::find(self->pending_.begin(), self->pending_.end(), p);
  if (it != self->pending_.end()) self->pending_.erase(it);
  if (p->finished) {  // the client is going: dropped
    delete p;
    return;
  }
  RedisResult r;
  if (reply == nullptr) {
    // The connection went (a deadline passed, the server closed, an error).
    r.error = self->loop_.now_ms() >= p->deadline_ms ? RedisError::kTimeout
                                                     : RedisError::kUnavailable;
    r.message = r.error == RedisError::kTimeout ? "Redis did not answer in time"
                                                : "the Redis connection was lost";
  } else {
    r.value = redis_value_from(reply);
    if (r.value.type == RedisValue::Type::kError) {
      r.error = RedisError::kReply;
      r.message = r.value.str;
    }
  }
  Callback done = std::move(p->done);
  delete p;
  done(r);
}

void RedisClient::drop() {
  // Not from inside a hiredis callback. hiredis's own disconnect waits for the replies still
  // due; freeing the context closes now, and hands every waiting callback a NULL reply
  // (failed in on_reply). on_disconnect reconnects.
  if (ac_ != nullptr) redisAsyncFree(ac_);
}

void RedisClient::on_timer(void* arg) {
  auto* self = static_cast<RedisClient*>(arg);
  if (self->pending_.empty()) return;
  const uint64_t now = self->loop_.now_ms();
  if (self->pending_.front()->deadline_ms <= now) {
    self->drop();
    return;
  }
  self->loop_.arm(self->timeout_timer_, self->pending_.front()->deadline_ms - now);
}

void RedisClient::retry_later() {
  if (!started_) return;
  backoff_ms_ = backoff_ms_ == 0 ? options_.reconnect_min_ms
                                 : std::min(backoff_ms_ * 2, options_.reconnect_max_ms);
  loop_.arm(reconnect_timer_, backoff_ms_);
}

void RedisClient::on_reconnect_timer(void* arg) {
  auto* self = static_cast<RedisClient*>(arg);
  if (!self->started_ || self->ac_ != nullptr) return;
  ++self->reconnects_;
  self->connect();
}

}  // namespace citadel::store
