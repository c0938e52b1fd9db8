#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, when they are missing:
# PostgreSQL server binaries, Mosquitto (broker + clients), socat, Chromium + ChromeDriver and
# Node.js (console browser tests), Debian's aiosmtpd (the e-mail channel's SMTP sink, run
# with /usr/bin/python3), then the browser tests' npm packages. Debian/Ubuntu only.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
/usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1 || need+=(python3-aiosmtpd)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# playwright-core drives the system chromium; typescript type-checks the console's modules
# (tests/typecheck-console.sh). `npm ci` installs exactly the locked versions.
browser="$(cd "$(dirname "$0")" && pwd)/browser"
if [ ! -d "$browser/node_modules/playwright-core" ] || [ ! -d "$browser/node_modules/typescript" ]; then
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

# dc09-spt (PyPI), an independent SIA DC-09 transmitter for the interop test, in a virtualenv
# of Debian's Python. Its declared dependency pycrypto no longer builds; pycryptodome provides
# the same `Crypto` package, so dc09-spt is installed without its dependencies.
venv="$(cd "$(dirname "$0")" && pwd)/python/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import dc09_spt, Crypto" >/dev/null 2>&1; then
    /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1 || {
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        /usr/bin/python3 -m venv "$venv"
    }
    "$venv/bin/pip" install -q "pycryptodome>=3.20"
    "$venv/bin/pip" install -q --no-deps "dc09-spt==0.0.4"
fi
