#!/usr/bin/env bash
# Installs the system programs herd calls (speech synthesis, media tools, a JRE for the COCO
# caption tokenizer). Only what is missing is installed; without apt-get it says what to install.
set -euo pipefail

declare -A NEED=(   # command -> Debian package
  [espeak-ng]=espeak-ng
  [flite]=flite
  [ffmpeg]=ffmpeg
  [rsvg-convert]=librsvg2-bin
  [java]=default-jre-headless
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "herd setup: apt-get is not available; install these system packages by hand: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "herd setup: installing system packages: ${missing[*]}"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
