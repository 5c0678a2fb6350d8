#!/usr/bin/env python3
"""Refuses an upward call between nodus's layers: a symbol that a layer's objects need and that
only a layer above defines.

    check_layers_link.py RUNTIME.a DIST.a OTP.a SERVICES.a

The static libraries of the layers, lowest first (src/meson.build builds them). For each one,
the symbols its objects leave undefined (nm -u) are looked up among the strong definitions
(T, D, B, R: not the weak copies of inline functions and templates) of the layers above it.
Prints each such symbol (demangled) with the layers involved and exits 1; exits 0 when no layer
calls up.
"""
import subprocess
import sys


def nm(path, *args):
    out = subprocess.run(["nm", "-P", "-g", *args, path], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        # "archive.a[member.o]:" headers and blank lines carry no symbol
        if len(parts) >= 2 and not parts[0].endswith(":"):
            rows.append((parts[0], parts[1]))
    return rows


def main() -> int:
    libs = sys.argv[1:]
    if not libs or libs[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if libs else 2
    strong = [{name for name, kind in nm(lib, "--defined-only") if kind in "TDBR"} for lib in libs]
    needed = [{name for name, kind in nm(lib, "-u")} for lib in libs]
    bad = []
    for i, lib in enumerate(libs):
        own = set().union(*strong[: i + 1])  # (a layer's own definitions and those below it)
        for j in range(i + 1, len(libs)):
            for sym in sorted((needed[i] & strong[j]) - own):
                bad.append((lib, libs[j], sym))
    if bad:
        names = subprocess.run(["c++filt"], input="\n".join(s for _, _, s in bad), capture_output=True,
                               text=True).stdout.splitlines()
        for (lib, above, _), name in zip(bad, names):
            print(f"{lib} calls up into {above}: {name}")
        return 1
    print(f"no upward call among {len(libs)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
