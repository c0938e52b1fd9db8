#!/usr/bin/env bash
# Type-checks the console's ES modules (crates/warden-console/assets/js/, `// @ts-check` + JSDoc)
# with TypeScript's checker in its default (strict) mode. Nothing is emitted: the browser runs
# the files as they are. Uses the compiler that `npm ci` puts in tests/browser (tests/deps.sh);
# skips cleanly when node or that compiler is not installed, and never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."
tsc=tests/browser/node_modules/.bin/tsc
if ! command -v node >/dev/null 2>&1 || [ ! -x "$tsc" ]; then
    echo "console type check skipped: node or $tsc missing (run tests/deps.sh)"
    exit 0
fi
"$tsc" --version
"$tsc" --noEmit --strict --allowJs --checkJs --target es2022 --module es2022 --moduleResolution bundler \
    --lib es2022,dom crates/warden-console/assets/js/*.js
echo "console type check passed"
