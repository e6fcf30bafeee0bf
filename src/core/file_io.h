// Small whole-file reads and writes for the control thread (certificates, keys, OCSP responses,
// ACME state). Never on a worker's loop: they block.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"

namespace citadel::core {

// Reads the regular file `path` whole into `out`: 0, or the errno that stopped it (ENOENT:
// there is none; EINVAL: not a regular file, such as a directory or a FIFO, which is never
// waited on; EFBIG: larger than `limit`).
int read_file(const std::string& path, std::string& out, size_t limit = 1 << 20);

// Writes `data` to `path` with `mode` through a temporary file beside it, renamed over it and
// the directory synced: a reader sees the old file or the new one, never half of one, and a
// crash keeps one of them. The temporary file is made exclusively and never through a link.
Status write_file_atomic(const std::string& path, const std::string& data, unsigned mode = 0600);

// mkdir -p with mode 0700 for the directories it makes; `path` itself is made 0700 even when it
// was there (it holds keys and databases).
Status make_private_dirs(const std::string& path);

}  // namespace citadel::core
