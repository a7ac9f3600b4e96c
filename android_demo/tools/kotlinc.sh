#!/usr/bin/env bash
# The Kotlin compiler the host tests use: npm's kotlin-compiler (JetBrains' full command-line distribution),
# pinned, installed once into a cache folder outside the checkout. It needs a JDK (Debian: openjdk-17-jdk-headless).
#
#   android_demo/tools/kotlinc.sh install   install if missing (no network when cached), print kotlinc-jvm's path
#   android_demo/tools/kotlinc.sh path      print kotlinc-jvm's path, or say how to install it and exit 1
set -euo pipefail
VERSION=2.4.20
ROOT="${COMPKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/compkit}/kotlin-compiler-$VERSION"
KOTLINC="$ROOT/node_modules/kotlin-compiler/bin/kotlinc-jvm"

case "${1:-}" in
  path)
    [ -x "$KOTLINC" ] || { echo "kotlinc $VERSION not installed under $ROOT: run android_demo/tools/kotlinc.sh install (make test does)" >&2; exit 1; }
    ;;
  install)
    if [ ! -x "$KOTLINC" ]; then
      command -v npm >/dev/null || { echo "npm not found: apt-get install npm" >&2; exit 1; }
      # Into a temp folder, renamed when complete: an interrupted install never looks installed.
      rm -rf "$ROOT.tmp" && mkdir -p "$ROOT.tmp"
      npm install --silent --no-audit --no-fund --prefix "$ROOT.tmp" "kotlin-compiler@$VERSION" >&2
      chmod +x "$ROOT.tmp"/node_modules/kotlin-compiler/bin/*
      rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
    fi
    ;;
  *)
    echo "usage: $0 install|path" >&2; exit 2
    ;;
esac
echo "$KOTLINC"
