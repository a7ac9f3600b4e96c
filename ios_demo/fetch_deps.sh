#!/bin/sh
# Fetches the native core's two third-party libraries into ThirdParty/, pinned to the versions the core is
# tested with on the desktop (Debian 12: nlohmann-json3 3.11.2, libutf8proc 2.8.0). Run once before
# `xcodegen generate`. The Android build fetches the same versions through CMake's FetchContent.
set -eu
cd "$(dirname "$0")"
mkdir -p ThirdParty
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

curl -fsSL -o "$tmp/json.tar.xz" https://github.com/nlohmann/json/releases/download/v3.11.2/json.tar.xz
echo "8c4b26bf4b422252e13f332bc5e388ec0ab5c3443d24399acb675e68278d341f  $tmp/json.tar.xz" | shasum -a 256 -c -
tar -xJf "$tmp/json.tar.xz" -C "$tmp"
rm -rf ThirdParty/json && mv "$tmp/json" ThirdParty/json

git clone -q --depth 1 --branch v2.8.0 https://github.com/JuliaStrings/utf8proc.git "$tmp/utf8proc"
rm -rf ThirdParty/utf8proc && mkdir -p ThirdParty/utf8proc
# utf8proc.c #includes utf8proc_data.c: copy both, compile only utf8proc.c (project.yml)
cp "$tmp/utf8proc/utf8proc.c" "$tmp/utf8proc/utf8proc.h" "$tmp/utf8proc/utf8proc_data.c" "$tmp/utf8proc/LICENSE.md" ThirdParty/utf8proc/
echo "ThirdParty/: nlohmann/json 3.11.2, utf8proc 2.8.0"
