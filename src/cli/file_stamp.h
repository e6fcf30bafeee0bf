// What tells a file changed without reading it: size, modification time and inode (a rename
// over the file, as renewal tools do, changes the inode). For the certificate watcher and the
// OCSP stapler on the control thread.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

namespace citadel::cli {

struct FileStamp {
  std::string path;
  int64_t mtime_ns = -1;  // -1: missing
  int64_t size = -1;
  uint64_t inode = 0;

  static FileStamp of(const std::string& path) {
    FileStamp st;
    st.path = path;
    struct stat sb;
    if (::stat(path.c_str(), &sb) == 0) {
      st.mtime_ns = static_cast<int64_t>(sb.st_mtim.tv_sec) * 1'000'000'000 + sb.st_mtim.tv_nsec;
      st.size = sb.st_size;
      st.inode = sb.st_ino;
    }
    return st;
  }
  bool operator==(const FileStamp& o) const {
    return path == o.path && mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
  }
};

}  // namespace citadel::cli
