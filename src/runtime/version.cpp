// nodus::version(): the version this library was built as.
#include "nodus/version.hpp"

namespace nodus {
const char* version() noexcept { return NODUS_VERSION_STRING; }
}  // namespace nodus
