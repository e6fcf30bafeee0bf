// Regular expressions of routes (match.path_regex, header `regex`, rewrite.regex), on RE2.
//
// RE2 matches in time linear in the input, whatever the pattern: a hostile path cannot make a
// worker backtrack for seconds against `^(a+)+$` (ReDoS), as std::regex could. The price is
// RE2's syntax: no backreferences, no lookaround; the config loader refuses those at load.
// Patterns are compiled once per snapshot; a compiled RE2 is immutable and safe to match from
// every worker at once.
#pragma once

#include <re2/re2.h>

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace citadel::proxy {

// Compiles a route pattern. Matching is on bytes (Latin-1), as std::regex did on the path:
// a UTF-8 literal in a pattern matches the same bytes in the path, and a byte that is not valid
// UTF-8 never makes a match fail. The error is RE2's own text ("missing ): (a").
// Called at config load (to validate) and when a snapshot is built; any thread.
core::Result<std::unique_ptr<re2::RE2>> compile_route_regex(std::string_view pattern);

// Turns a rewrite substitution in the config's syntax, the one of ECMAScript's
// String.prototype.replace and of std::regex_replace that Citadel used before (`$1`..`$99`
// a group, `$&` the whole match, `$$` a dollar, every other character itself), into RE2's
// rewrite syntax (`\1`, `\0`, and `\\` for a backslash). Fails for what RE2 cannot rewrite:
// `` $` `` and `$'` (the text around the match) and groups above 9.
core::Result<std::string> to_re2_rewrite(std::string_view substitution);

}  // namespace citadel::proxy
