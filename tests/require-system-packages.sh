#!/usr/bin/env bash
# Make sure the Debian/Ubuntu packages that telesales needs are installed.
#
#   tests/require-system-packages.sh             the test suite's packages
#   tests/require-system-packages.sh PKG...      these packages (e.g. python3.11-venv)
#
# Packages that are present are left alone. When some are missing: as root,
# install them with apt-get (non-interactive, no recommends); as any other
# user, stop and print the command to run.
set -euo pipefail

# espeak-ng and sox synthesise the audio fixtures, sip-tester provides the
# `sipp` SIP peer, chromium drives the pages.
TEST_PACKAGES=(espeak-ng sox sip-tester chromium)

# True when package $1 is usable. We check for what the code calls (a command,
# a file), not only for the dpkg entry, so a tool installed another way counts.
have() {
    case "$1" in
        espeak-ng) command -v espeak-ng ;;
        sox) command -v sox ;;
        sip-tester) command -v sipp ;;
        chromium) test -x /usr/bin/chromium ;;
        python3*-venv) "${PYTHON:-python3}" -c 'import ensurepip, venv' ;;
        *) dpkg-query -W -f='${Status}' "$1" | grep -q 'install ok installed' ;;
    esac >/dev/null 2>&1
}

missing_of() {
    local pkg
    for pkg in "$@"; do
        have "$pkg" || printf '%s\n' "$pkg"
    done
}

if [ "$#" -gt 0 ]; then
    packages=("$@")
else
    packages=("${TEST_PACKAGES[@]}")
fi

mapfile -t missing < <(missing_of "${packages[@]}")
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    cat >&2 <<MSG

Missing system packages: ${missing[*]}
Install them (as root) and run the command again:

    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}

MSG
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing system packages: ${missing[*]}; apt-get not found: install them with your system's package manager." >&2
    exit 1
fi

echo "Installing missing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update </dev/null
apt-get install -y --no-install-recommends "${missing[@]}" </dev/null

mapfile -t still < <(missing_of "${missing[@]}")
if [ "${#still[@]}" -gt 0 ]; then
    echo "Installed, but still not usable: ${still[*]}" >&2
    case " ${still[*]} " in
        *" chromium "*) echo "  chromium: the tests need /usr/bin/chromium (on Ubuntu the apt package is a snap wrapper)." >&2 ;;
    esac
    exit 1
fi
