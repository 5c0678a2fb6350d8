#!/usr/bin/env bash
# The library's layers (runtime < dist < otp < services, src/meson.build) hold:
#   includes   scripts/check_layers.py accepts this tree, and refuses a copy of it with one
#              upward include of each kind (a private header above, a public header above, a
#              "../" path, a public header including one above)
#   calls      tests/packaging/check_layers_link.py finds no symbol a layer's objects need that
#              only a layer above defines, in BUILD's static libraries of the layers
# Usage: tests/packaging/layers.sh BUILD
# Prints "ok   packaging: ..." or "FAIL packaging: ..." per check; exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: layers.sh BUILD}
rc=0
ok() { echo "ok   packaging: $*"; }
fail() { echo "FAIL packaging: $*"; rc=1; }

if out=$(python3 scripts/check_layers.py . 2>&1); then
  ok "layers: no upward include in src/ and include/"
else
  fail "layers: scripts/check_layers.py refuses this tree:"; echo "$out"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r src include "$work/"
echo '#include "dist/node_impl.hpp"' >>"$work/src/runtime/io.cpp"
echo '#include "nodus/task.hpp"' >>"$work/src/dist/codec.hpp"
echo '#include "../gateway/gateway.hpp"' >>"$work/src/otp/pg.cpp"
echo '#include "nodus/node.hpp"' >>"$work/include/nodus/term.hpp"
out=$(python3 scripts/check_layers.py "$work" 2>&1)
want=("src/runtime/io.cpp:.*dist/node_impl.hpp.*above" "src/dist/codec.hpp:.*nodus/task.hpp.*above"
      "src/otp/pg.cpp:.*\.\./gateway/gateway.hpp" "include/nodus/term.hpp:.*nodus/node.hpp.*above")
missed=0
for w in "${want[@]}"; do grep -q -- "$w" <<<"$out" || { missed=1; echo "not refused: $w"; }; done
if ((missed == 0)) && ! python3 scripts/check_layers.py "$work" >/dev/null 2>&1; then
  ok "layers: check_layers.py refuses each of 4 upward includes"
else
  fail "layers: check_layers.py let an upward include through:"; echo "$out"
fi

libs=()
for l in runtime dist otp services; do libs+=("$build/src/libnodus_$l.a"); done
if out=$(python3 tests/packaging/check_layers_link.py "${libs[@]}" 2>&1); then
  ok "layers: $out"
else
  fail "layers: a layer calls up:"; echo "$out"
fi
exit $rc
