// The one exception type of the core. Its code is what the C API returns (compkit.h).
#pragma once

#include <stdexcept>
#include <string>

#include "compkit.h"

namespace compkit {

struct Error : std::runtime_error {
  compkit_status code;
  Error(compkit_status code, const std::string& what) : std::runtime_error(what), code(code) {}
};

}  // namespace compkit
