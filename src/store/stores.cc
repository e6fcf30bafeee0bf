#include "store/stores.h"

#include "core/file_io.h"
#include "store/sqlite_database.h"

namespace citadel::store {

core::Result<std::shared_ptr<SqlDatabase>> Stores::sql() {
  if (sql_) return sql_;
  if (options_.data_dir.empty()) return core::Status::error("store: no data_dir");
  if (core::Status s = core::make_private_dirs(options_.data_dir); !s.ok()) {
    return core::Status::error("store: " + s.message());
  }
  SqliteDatabase::Options o;
  o.path = options_.data_dir + "/citadel.db";
  auto db = SqliteDatabase::open(o);
  if (!db.ok()) return db.error();
  sql_ = std::shared_ptr<SqlDatabase>(std::move(db.value()));
  return sql_;
}

void Stores::close() {
  if (sql_) sql_->close();
}

}  // namespace citadel::store
