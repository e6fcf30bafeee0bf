#include "core/config_reader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace citadel::core {
namespace {

TEST(ConfigErrors, KeepsLineOrderAndTheOrderOfOneLine) {
  ConfigErrors errors;
  errors.add("f:9: late", 9);
  errors.add("f:2: first on 2", 2);
  errors.add("f: no line");
  errors.add("f:9: second on 9", 9);
  errors.add("f:2: second on 2", 2);
  EXPECT_EQ(errors.all(),
            (std::vector<std::string>{"f: no line", "f:2: first on 2", "f:2: second on 2",
                                      "f:9: late", "f:9: second on 9"}));
}

class ConfigReaderTest : public ::testing::Test {
 protected:
  std::optional<YAML::Node> load(const std::string& text) {
    path = ::testing::TempDir() + "citadel_reader_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid()) + ".yaml";
    std::ofstream(path) << text;
    return load_yaml_file(path, errors);
  }
  std::string path;
  ConfigErrors errors;
};

TEST_F(ConfigReaderTest, DuplicateKeysInNestedMapsAndLists) {
  auto root = load("a: 1\nb:\n  - { x: 1, y: 2, x: 3 }\n  - c: {}\n    c: []\na: 2\n");
  ASSERT_TRUE(root);  // the document is still returned: the loader reports the rest too
  ASSERT_EQ(errors.all().size(), 3u);
  EXPECT_EQ(errors.all()[0], path + ":3: b[0].x: duplicate key (first at line 3)");
  EXPECT_EQ(errors.all()[1], path + ":5: b[1].c: duplicate key (first at line 4)");
  EXPECT_EQ(errors.all()[2], path + ":6: a: duplicate key (first at line 1)");
}

TEST_F(ConfigReaderTest, AliasOfItselfEndsTheWalk) {
  auto root = load("a: &x [*x]\n");
  EXPECT_TRUE(root);
  EXPECT_TRUE(errors.empty());
}

TEST_F(ConfigReaderTest, ADirectoryOrAMissingFileIsAnErrorNotAnAbort) {
  // From an outside attack: a reload of a path that had become a directory aborted the server
  // (yaml-cpp's I/O error is no YAML exception).
  const std::string dir = ::testing::TempDir() + "citadel_dir_" + std::to_string(getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  EXPECT_FALSE(load_yaml_file(dir, errors));
  ASSERT_EQ(errors.all().size(), 1u);
  EXPECT_EQ(errors.all()[0], dir + ": cannot read the file (not a regular file)");
  ::rmdir(dir.c_str());
  ConfigErrors missing;
  EXPECT_FALSE(load_yaml_file(dir + "/nothing.yaml", missing));
  EXPECT_EQ(missing.all().size(), 1u);
}

TEST_F(ConfigReaderTest, AnAliasBombIsRefused) {
  // Nine levels of ten aliases: a billion nodes from a kilobyte.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string p = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p + ", " + p + ", " +
            p + ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + "]\n";
  }
  EXPECT_FALSE(load(text));
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors.all()[0].find("expands to more than 100000 nodes"), std::string::npos);
}

TEST_F(ConfigReaderTest, NonzeroDurationAndLinesOfAbsentKeys) {
  auto root = load("m:\n  zero: 0s\n  ok: 2s\n  empty:\n");
  ASSERT_TRUE(root);
  ConfigNode n(*root, "", &path, &errors);
  EXPECT_EQ(n["m"]["ok"].nonzero_duration_ms(7), 2000u);
  EXPECT_EQ(n["m"]["absent"].nonzero_duration_ms(7), 7u);
  EXPECT_EQ(n["m"]["zero"].nonzero_duration_ms(7), 7u);
  EXPECT_EQ(n["m"]["empty"].line(), 4);   // its key's line, not the next token's
  EXPECT_EQ(n["m"]["absent"].line(), 1);  // the mapping's key
  n["m"]["absent"]["deeper"].error("missing");
  ASSERT_EQ(errors.all().size(), 2u);
  EXPECT_EQ(errors.all()[0], path + ":1: m.absent.deeper: missing");
  EXPECT_EQ(errors.all()[1],
            path + ":2: m.zero: expected a duration greater than 0, such as 500ms or 1s");
}

}  // namespace
}  // namespace citadel::core
