// An asynchronous Redis client on one event loop (a worker's, or the control thread's), over
// Debian's hiredis: its async context drives the protocol, this class plugs it into
// core::EventLoop (an adapter: fd registration, writes flushed from a loop task) and adds what
// hiredis 0.14 lacks: a deadline per command, reconnection with backoff, and a bound on what may
// wait. Commands are pipelined on one connection; replies come back in order.
//
// While disconnected, a command fails at once (kUnavailable), never queues for later: callers
// (rate limits, sessions) have a local fallback and must not wait on Redis. A command that
// misses its deadline fails, and the connection is dropped and made again (the replies would
// now be out of step).
//
// Thread: the loop's thread only. Callbacks run on the loop, never from inside command(). It
// flushes writes from a loop task: destroy it after the loop stopped, or through the loop's
// defer_delete() (it is a Deferred), never from inside a batch of events directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/timer_wheel.h"

struct redisAsyncContext;

namespace citadel::store {

struct RedisValue {
  enum class Type : uint8_t { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<RedisValue> elements;
};

enum class RedisError : uint8_t { kNone, kUnavailable, kTimeout, kReply };

struct RedisResult {
  RedisError error = RedisError::kNone;  // kReply: the server answered with an error
  std::string message;
  RedisValue value;
  bool ok() const { return error == RedisError::kNone; }
};

class RedisClient final : public core::Deferred, core::IoHandler, core::LoopTask {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // or a path starting with '/': a Unix socket
    uint16_t port = 6379;
    std::string password;             // AUTH on every connection when set
    uint64_t timeout_ms = 1000;       // per command
    uint64_t reconnect_min_ms = 100;  // doubling up to reconnect_max_ms
    uint64_t reconnect_max_ms = 5000;
    size_t max_pending = 10000;
  };
  using Callback = std::function<void(RedisResult&)>;

  RedisClient(core::EventLoop& loop, Options options);
  ~RedisClient();  // pending callbacks are dropped, not called
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects (again after a failure, with backoff) until destroyed.
  void start();
  // Sends `args` (a command and its arguments, binary-safe); `done` runs once, later.
  void command(std::vector<std::string> args, Callback done);
  bool connected() const { return connected_; }
  uint64_t reconnects() const { return reconnects_; }

 private:
  struct Pending {
    RedisClient* owner;
    Callback done;
    uint64_t deadline_ms;
    bool finished = false;
  };
  void connect();
  void on_io(uint32_t events) override;
  void run_task() override;  // flushes what hiredis still holds to write
  void drop();  // closes the connection now, fails what waits
  void deliver(Pending* p, RedisResult& r);
  void retry_later();
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void add_write(void* self);
  static void del_write(void* self);
  static void noop(void*) {}
  static void cleanup(void* self);
  static void on_timer(void* self);
  static void on_reconnect_timer(void* self);

  core::EventLoop& loop_;
  Options options_;
  redisAsyncContext* ac_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  bool want_write_ = false;
  bool started_ = false;
  uint64_t backoff_ms_ = 0;
  uint64_t reconnects_ = 0;
  std::deque<Pending*> pending_;  // in the order replies come
  std::deque<Pending*> failed_;   // refused in command(), answered from run_task()
  core::Timer timeout_timer_;
  core::Timer reconnect_timer_;
};

RedisValue redis_value_from(const void* reply);  // hiredis's redisReply, converted (tests)

}  // namespace citadel::store
