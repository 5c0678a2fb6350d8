#!/usr/bin/python3
"""Checks an installed nodus (a staged `meson install --destdir STAGE`) against its pkg-config
files: every installed header compiles on its own with the flags of the package it belongs to,
every library header it includes comes from a package that package requires (or is named as
one without a .pc file), and `pkg-config --cflags nodus` carries no private dependency's flags.

  check_headers.py STAGE PC_DIR

Prints one line per problem and exits 1 if there is any; prints a summary line and exits 0 if not.
"""
import os
import shutil
import subprocess
import sys

stage, pc_dir = sys.argv[1], sys.argv[2]
env = dict(os.environ, PKG_CONFIG_PATH=pc_dir, PKG_CONFIG_SYSROOT_DIR=stage)

# the package each installed header belongs to (the rest: nodus)
PACKAGE_OF = {"cli.hpp": "nodus-cli", "testing.hpp": "nodus-testing"}
# a library's top-level entry under /usr/include -> the pkg-config name that provides it
ROOTS = {"spdlog": "spdlog", "fmt": "fmt", "CLI": "CLI11", "zmq.h": "libzmq", "zmq_utils.h": "libzmq",
         "zmq.hpp": "cppzmq", "sodium": "libsodium", "sodium.h": "libsodium", "toml++": "tomlplusplus",
         "nlohmann": "nlohmann_json", "cereal": "cereal"}
# header-only libraries with no .pc file on Debian: allowed when the package's description names them
NO_PC = {"cereal": "libcereal-dev"}
# what the C library, the kernel headers and the compiler provide
SYSTEM_PACKAGES = ("libc6-dev", "linux-libc-dev", "libstdc++", "libgcc", "gcc-")
PRIVATE_FLAGS = ("pgm-", "libxml2", "krb5", "TOML_", "sodium")

problems = []
CLANG = shutil.which("clang++")


def pkg(*args):
    r = subprocess.run(["pkg-config", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        problems.append("pkg-config %s: %s" % (" ".join(args), r.stderr.strip()))
        return ""
    return r.stdout.strip()


def requires(name, seen=None):
    """The package's Requires, transitively (names only)."""
    seen = set() if seen is None else seen
    for line in pkg("--print-requires", name).splitlines():
        dep = line.split()[0] if line.split() else ""
        if dep and dep not in seen:
            seen.add(dep)
            requires(dep, seen)
    return seen


include_dir = next((os.path.join(d, "nodus") for d, _, files in os.walk(stage) if d.endswith("/include")
                    and os.path.isdir(os.path.join(d, "nodus"))), None)
if include_dir is None:
    print("no include/nodus in " + stage)
    sys.exit(1)
headers = sorted(h for h in os.listdir(include_dir) if h.endswith(".hpp"))

cflags_nodus = pkg("--cflags", "nodus")
leaked = [bad for bad in PRIVATE_FLAGS if bad in cflags_nodus]
if leaked:
    problems.append("pkg-config --cflags nodus carries private dependencies' flags (%s): %s" % (", ".join(leaked), cflags_nodus))

unknown = {}  # path -> header that included it
for h in headers:
    package = PACKAGE_OF.get(h, "nodus")
    flags = pkg("--cflags", package).split()
    allowed = requires(package) | {package}
    src = "#include <nodus/%s>\n" % h
    compile_ = subprocess.run(["g++", "-std=c++20", "-fsyntax-only", "-x", "c++", "-", *flags],
                              input=src, capture_output=True, text=True)
    if compile_.returncode != 0:
        first = next((l for l in compile_.stderr.splitlines() if "error" in l), compile_.stderr[:300])
        problems.append("nodus/%s does not compile with `pkg-config --cflags %s` alone: %s" % (h, package, first))
        continue
    # and with clang where it is installed (Debian's clang 14 with libstdc++ 12 lacks some of
    # what g++ 12 has: std::source_location once broke every header for it)
    if CLANG:
        with_clang = subprocess.run([CLANG, "-std=c++20", "-fsyntax-only", "-x", "c++", "-", *flags],
                                    input=src, capture_output=True, text=True)
        if with_clang.returncode != 0:
            first = next((l for l in with_clang.stderr.splitlines() if "error" in l), with_clang.stderr[:300])
            problems.append("nodus/%s does not compile with clang++ and `pkg-config --cflags %s`: %s" % (h, package, first))
    deps = subprocess.run(["g++", "-std=c++20", "-M", "-x", "c++", "-", *flags], input=src,
                          capture_output=True, text=True).stdout
    for path in deps.replace("\\\n", " ").split()[1:]:
        if path.startswith(stage) or not path.startswith("/usr/include/"):
            continue
        rest = path[len("/usr/include/"):]
        if rest.startswith(("c++/", "x86_64-linux-gnu/")):
            continue
        root = rest.split("/")[0]
        if root in ROOTS:
            need = ROOTS[root]
            if need in NO_PC:
                continue  # checked below: named in nodus.pc's description
            if need not in allowed:
                problems.append("nodus/%s includes %s (%s), which %s.pc does not require" % (h, path, need, package))
        else:
            unknown.setdefault(path, h)

# everything else must come from the C library or the kernel headers
if unknown:
    r = subprocess.run(["dpkg", "-S", *sorted(unknown)], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        owner, _, path = line.partition(": ")
        if not any(owner.startswith(p) for p in SYSTEM_PACKAGES):
            problems.append("nodus/%s includes %s from %s, which no .pc of nodus declares" % (unknown[path.strip()], path.strip(), owner))

with open(os.path.join(pc_dir, "nodus.pc")) as f:
    nodus_pc = f.read()
for root, deb in NO_PC.items():
    if deb not in nodus_pc:
        problems.append("nodus.pc does not name %s (the %s headers, which have no .pc file)" % (deb, root))

for p in problems:
    print(p)
if problems:
    sys.exit(1)
print("%d installed headers compile alone (g++%s) and include only what their .pc files declare" % (len(headers), " and clang++" if CLANG else ""))
