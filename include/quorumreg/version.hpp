// quorumreg — library version.
#pragma once

#define QUORUMREG_VERSION_MAJOR 0
#define QUORUMREG_VERSION_MINOR 1
#define QUORUMREG_VERSION_PATCH 0
#define QUORUMREG_VERSION_STRING "0.1.0"

namespace quorumreg {
inline constexpr const char* version_string = QUORUMREG_VERSION_STRING;
} // namespace quorumreg
