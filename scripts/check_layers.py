#!/usr/bin/env python3
"""Refuses an upward include between nodus's layers (meson runs it as it configures).

    check_layers.py SOURCE_ROOT [--stamp FILE]

(--stamp: writes FILE when there is no violation, for the build's own check: ninja runs it on
every build, so an upward include added after configuring is refused too.)

The library is built in layers, each a static library (src/meson.build):
    runtime < dist < otp < services (gateway, zmq_port, metrics, services)
A file includes headers of its own layer and of the layers below, never above; the private
headers of a layer below are included as "LAYER/header.hpp" (never with "../"). Each public
header (include/nodus/) belongs to a layer too, listed below, and obeys the same rule.
Prints each violation as FILE:LINE and exits 1; exits 0 when there is none.
"""
import pathlib
import re
import sys

LAYERS = ["runtime", "dist", "otp", "services", "tools"]
RANK = {name: i for i, name in enumerate(LAYERS)}
# the directories of src/ and their layer
DIRS = {"runtime": "runtime", "dist": "dist", "otp": "otp",
        "gateway": "services", "zmq_port": "services", "metrics": "services", "services": "services"}
# the public headers and their layer (the layer that implements what they declare; observe.hpp's
# types are filled by every layer, so it sits at the bottom)
PUBLIC = {
    "runtime": ["atom", "error", "export", "io", "log", "mailbox", "message", "observe", "pid", "proc",
                "process", "receive", "runtime", "system_messages", "term", "term_parser", "type_name",
                "version", "detail/atom", "detail/message", "detail/pid", "detail/process",
                "detail/receive"],
    "dist": ["node", "portmapper", "wire_type", "detail/node", "detail/wire_type"],
    "otp": ["application", "config", "erpc", "gen_server", "global", "pg", "supervisor", "task",
            "detail/erpc", "detail/gen_server", "detail/task"],
    "services": ["zmq_port", "detail/zmq_port", "nodus"],
    # separate packages (nodus-cli, nodus-testing), above the library
    "tools": ["cli", "testing"],
}
PUBLIC_LAYER = {f"nodus/{h}.hpp": layer for layer, hs in PUBLIC.items() for h in hs}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help") or len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--stamp"):
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    root = pathlib.Path(args[0])
    errors = []
    files = []  # (path, its layer, the directory its own includes resolve in)
    for d, layer in DIRS.items():
        for f in sorted((root / "src" / d).glob("*.[ch]pp")):
            files.append((f, layer))
    for f in sorted((root / "include" / "nodus").rglob("*.hpp")):
        rel = f.relative_to(root / "include").as_posix()
        if rel not in PUBLIC_LAYER:
            errors.append(f"{rel}: a public header with no layer: add it to scripts/check_layers.py")
            continue
        files.append((f, PUBLIC_LAYER[rel]))
    for f, layer in files:
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            where = f"{f.relative_to(root).as_posix()}:{lineno}"
            if target.startswith("../") or "/../" in target:
                errors.append(f'{where}: "{target}": include a lower layer\'s header as "LAYER/header.hpp"')
                continue
            if target.startswith("nodus/"):
                tlayer = PUBLIC_LAYER.get(target)
                if tlayer is None:
                    if f.parent.joinpath(pathlib.Path(target).name).exists() and f.is_relative_to(root / "include"):
                        continue  # (a sibling inside include/nodus: handled by its own name)
                    errors.append(f'{where}: "{target}": not a listed public header')
                    continue
            elif "/" in target:
                top = target.split("/", 1)[0]
                if f.is_relative_to(root / "include"):
                    if (f.parent / target).exists():  # detail/x.hpp from include/nodus/
                        tlayer = PUBLIC_LAYER.get("nodus/" + target)
                    else:
                        errors.append(f'{where}: "{target}": a public header includes a private one')
                        continue
                elif top in DIRS and (root / "src" / target).exists():
                    tlayer = DIRS[top]
                else:
                    errors.append(f'{where}: "{target}": no such private header in src/')
                    continue
            else:
                if not (f.parent / target).exists():
                    errors.append(f'{where}: "{target}": not in this directory (a lower layer\'s is "LAYER/{target}")')
                    continue
                if f.is_relative_to(root / "include"):
                    tlayer = PUBLIC_LAYER.get((f.parent / target).relative_to(root / "include").as_posix())
                else:
                    tlayer = layer
            if tlayer is None:
                errors.append(f'{where}: "{target}": a header with no layer')
            elif RANK[tlayer] > RANK[layer]:
                errors.append(f'{where}: "{target}" is in layer {tlayer}, above this file\'s layer {layer}')
    for e in errors:
        print(e)
    if not errors and len(args) == 3:
        pathlib.Path(args[2]).write_text("no upward include\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
