#include "crypto/password.h"

#include <gtest/gtest.h>

#include <string>

namespace citadel::crypto {
namespace {

// Small parameters keep the suite fast; the production defaults are checked once.
constexpr PasswordParams kFast{8 * 1024, 1};

TEST(Password, HashesVerifyAndCarryTheirParameters) {
  auto h = password_hash("correct horse battery staple", kFast);
  ASSERT_TRUE(h.ok()) << h.error().message();
  EXPECT_EQ(h.value().rfind("$argon2id$v=19$m=8192,t=1,p=1$", 0), 0u) << h.value();
  EXPECT_TRUE(password_verify("correct horse battery staple", h.value()));
  EXPECT_FALSE(password_verify("correct horse battery stapl", h.value()));
  EXPECT_FALSE(password_verify("", h.value()));
  // A fresh salt each time: the same password never hashes the same.
  auto again = password_hash("correct horse battery staple", kFast);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again.value(), h.value());
  // NUL bytes are part of the password.
  auto nul = password_hash(std::string("a\0b", 3), kFast);
  ASSERT_TRUE(nul.ok());
  EXPECT_FALSE(password_verify("a", nul.value()));
  EXPECT_TRUE(password_verify(std::string("a\0b", 3), nul.value()));
}

TEST(Password, RehashWhenTheParametersChange) {
  auto h = password_hash("pw", kFast);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(password_needs_rehash(h.value(), kFast));
  EXPECT_TRUE(password_needs_rehash(h.value(), PasswordParams{}));  // OWASP defaults
  EXPECT_TRUE(password_needs_rehash("$2b$10$bcrypt-from-elsewhere", kFast));
}

TEST(Password, MalformedStoredHashesNeverMatch) {
  for (const char* bad :
       {"", "plaintext", "$argon2id$", "$argon2i$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA",
        "$argon2id$v=19$m=8192,t=1,p=1$$"}) {
    EXPECT_FALSE(password_verify("plaintext", bad)) << bad;
  }
  EXPECT_FALSE(password_verify("x", std::string(200, 'a')));
  EXPECT_FALSE(password_hash("x", PasswordParams{1, 1}).ok());  // under Argon2id's minimum
}

TEST(Password, TheDefaultsAreOwaspsMinimum) {
  PasswordParams d;
  EXPECT_EQ(d.memory_kib, 19u * 1024);
  EXPECT_EQ(d.iterations, 2u);
  auto h = password_hash("pw", d);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h.value().rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u);
}

}  // namespace
}  // namespace citadel::crypto
