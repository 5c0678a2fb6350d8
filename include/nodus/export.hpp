// Which symbols libnodus exports. The library is built with -fvisibility=hidden: what a public
// header declares between NODUS_API_BEGIN and NODUS_API_END (each public header wraps its
// declarations in them) is the library's interface, everything else in it stays internal.
// NODUS_API marks a single declaration outside such a block.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define NODUS_API __attribute__((visibility("default")))
#define NODUS_API_BEGIN _Pragma("GCC visibility push(default)")
#define NODUS_API_END _Pragma("GCC visibility pop")
#else
#define NODUS_API
#define NODUS_API_BEGIN
#define NODUS_API_END
#endif
