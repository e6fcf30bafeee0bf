// RedisClient against a real redis-server (Debian's), started by each test in a temporary
// directory on a Unix socket or a loopback port, stopped by PID.
#include "store/redis_client.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "../core/loop_thread.h"

extern char** environ;

namespace citadel::store {
namespace {

using core::testing::LoopThread;
using std::chrono::milliseconds;

class RedisServer {
 public:
  explicit RedisServer(const std::string& socket, const std::string& password = "")
      : socket_(socket), password_(password) {
    start();
  }
  ~RedisServer() { stop(); }
  void start() {
    std::vector<std::string> args = {"redis-server", "--port", "0", "--unixsocket", socket_,
                                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                                     "--enable-debug-command", "yes", "--loglevel", "warning"};
    if (!password_.empty()) {
      args.push_back("--requirepass");
      args.push_back(password_);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, "redis-server", &quiet, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&quiet);
    ASSERT_EQ(rc, 0);
    for (int i = 0; i < 500; ++i) {  // up to 5 s for the socket to appear
      struct stat st {};
      if (::stat(socket_.c_str(), &st) == 0) return;
      std::this_thread::sleep_for(milliseconds(10));
    }
    FAIL() << "redis-server did not start";
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    ::unlink(socket_.c_str());
  }

 private:
  std::string socket_;
  std::string password_;
  pid_t pid_ = -1;
};

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket = ::testing::TempDir() + "citadel_redis_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".sock";
    ::unlink(socket.c_str());
  }
  void TearDown() override {
    if (client) {
      std::promise<void> gone;
      loop.loop.post([&] {
        client.reset();
        gone.set_value();
      });
      gone.get_future().wait_for(std::chrono::seconds(5));
    }
  }
  void Start(const std::string& password = "") {
    RedisClient::Options o;
    o.host = socket;
    o.password = password;
    o.timeout_ms = 300;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 100;
    std::promise<void> started;
    loop.loop.post([&] {
      client = std::make_unique<RedisClient>(loop.loop, o);
      client->start();
      started.set_value();
    });
    started.get_future().wait();
  }
  bool Connected() {
    std::promise<bool> p;
    loop.loop.post([&] { p.set_value(client->connected()); });
    return p.get_future().get();
  }
  bool WaitConnected() {
    for (int i = 0; i < 500; ++i) {
      if (Connected()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }
  RedisResult Run(std::vector<std::string> args) {
    std::promise<RedisResult> p;
    auto f = p.get_future();
    loop.loop.post([&] {
      client->command(std::move(args), [&p](RedisResult& r) { p.set_value(std::move(r)); });
    });
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "no reply";
      return {};
    }
    return f.get();
  }
  std::string socket;
  LoopThread loop;
  std::unique_ptr<RedisClient> client;
};

TEST_F(RedisTest, CommandsAndRepliesOfEveryType) {
  RedisServer server(socket);
  Start();
  ASSERT_TRUE(WaitConnected());
  const std::string binary("a\0b\r\nc", 6);
  EXPECT_EQ(Run({"SET", "k", binary}).value.str, "OK");
  auto get = Run({"GET", "k"});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get.value.type, RedisValue::Type::kString);
  EXPECT_EQ(get.value.str, binary);
  EXPECT_EQ(Run({"GET", "absent"}).value.type, RedisValue::Type::kNil);
  EXPECT_EQ(Run({"INCRBY", "n", "41"}).value.integer, 41);
  Run({"RPUSH", "l", "x", "y"});
  auto list = Run({"LRANGE", "l", "0", "-1"});
  ASSERT_EQ(list.value.elements.size(), 2u);
  EXPECT_EQ(list.value.elements[1].str, "y");
  auto wrong = Run({"INCR", "l"});
  EXPECT_EQ(wrong.error, RedisError::kReply);
  EXPECT_NE(wrong.message.find("WRONGTYPE"), std::string::npos);
}

TEST_F(RedisTest, PipelinedRepliesComeInOrder) {
  RedisServer server(socket);
  Start();
  ASSERT_TRUE(WaitConnected());
  constexpr int kN = 2000;
  std::promise<void> all;
  std::vector<int64_t> got;
  loop.loop.post([&] {
    for (int i = 0; i < kN; ++i) {
      client->command({"INCR", "seq"}, [&](RedisResult& r) {
        got.push_back(r.ok() ? r.value.integer : -1);
        if (static_cast<int>(got.size()) == kN) all.set_value();
      });
    }
  });
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  for (int i = 0; i < kN; ++i) ASSERT_EQ(got[i], i + 1);
}

TEST_F(RedisTest, WithoutAServerCommandsFailAtOnceThenReconnect) {
  Start();  // nothing listens yet
  auto r = Run({"PING"});
  EXPECT_EQ(r.error, RedisError::kUnavailable);
  RedisServer server(socket);
  ASSERT_TRUE(WaitConnected());
  EXPECT_EQ(Run({"PING"}).value.str, "PONG");
  // The server dies: what waits fails, and the client comes back with the server.
  server.stop();
  for (int i = 0; i < 200 && Connected(); ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(Run({"PING"}).error, RedisError::kUnavailable);
  server.start();
  ASSERT_TRUE(WaitConnected());
  EXPECT_EQ(Run({"PING"}).value.str, "PONG");
  std::promise<uint64_t> reconnects;
  loop.loop.post([&] { reconnects.set_value(client->reconnects()); });
  EXPECT_GT(reconnects.get_future().get(), 0u);
}

TEST_F(RedisTest, ACommandPastItsDeadlineFailsAndTheConnectionRecovers) {
  RedisServer server(socket);
  Start();
  ASSERT_TRUE(WaitConnected());
  auto slow = Run({"DEBUG", "SLEEP", "1"});  // 1 s against a 300 ms deadline
  EXPECT_EQ(slow.error, RedisError::kTimeout);
  // The server sleeps on (it is single-threaded): the client answers again once it wakes.
  bool pong = false;
  for (int i = 0; i < 20 && !pong; ++i) {
    ASSERT_TRUE(WaitConnected());
    pong = Run({"PING"}).value.str == "PONG";
  }
  EXPECT_TRUE(pong);
}

TEST_F(RedisTest, PasswordsAreSentFirst) {
  RedisServer server(socket, "s3cret");
  Start("s3cret");
  ASSERT_TRUE(WaitConnected());
  EXPECT_EQ(Run({"PING"}).value.str, "PONG");
}

}  // namespace
}  // namespace citadel::store
