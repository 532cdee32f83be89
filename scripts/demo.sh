#!/usr/bin/env bash
# The main job: installs missing dependencies, builds, starts the Key Vault emulator with a demo
# vault and shows pkcs11-tool and openssl signing with vault keys through the module.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
bash "$top/scripts/deps.sh"
BUILD_DIR=$build bash "$top/scripts/build.sh"
exec bash "$top/tests/integration/demo.sh" "$build"
