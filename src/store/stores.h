// The storage engines platform services share, from the top-level `store:` block: made once
// per process on first use, kept until shutdown. Services reach them through the parser that
// the cli wiring hands this object to (platform/ uses store/; the pipeline knows neither).
//
// Today: the embedded SQL engine (SQLite at `store.data_dir`/citadel.db). Engines for several
// instances (PostgreSQL, Redis) plug in here, behind the same interfaces.
//
// Thread contract: configure(), sql() and close() on the control thread only (service parsers
// run there); the engines themselves are used from any worker.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "store/sql.h"

namespace citadel::store {

struct StoreOptions {
  std::string data_dir;  // resolved, absolute or relative to the working directory
};

class Stores {
 public:
  Stores() = default;
  Stores(const Stores&) = delete;
  Stores& operator=(const Stores&) = delete;
  ~Stores() { close(); }

  // The options the engines open with. Read at start: a reload that changes them is refused by
  // the loader's caller (an engine cannot move under live services).
  void configure(const StoreOptions& options) { options_ = options; }
  const StoreOptions& options() const { return options_; }

  // The SQL engine, opened on first use (the data directory made 0700, the file 0600).
  core::Result<std::shared_ptr<SqlDatabase>> sql();

  // Closes the engines (store/sql.h: close()).
  void close();

 private:
  StoreOptions options_;
  std::shared_ptr<SqlDatabase> sql_;
};

}  // namespace citadel::store
