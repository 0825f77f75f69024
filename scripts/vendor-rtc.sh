#!/usr/bin/env bash
# vendor/rtc is rtc 0.21.1 from crates.io plus vendor/rtc/patches/*.patch
# (why each: vendor/rtc/PATCHES.md). This rebuilds that tree from the
# published crate, checked against the SHA-256 pinned here, and
#
#   scripts/vendor-rtc.sh --check   # fails if vendor/rtc is not exactly that (scripts/test.sh runs it)
#   scripts/vendor-rtc.sh --write   # makes vendor/rtc that (after editing a patch)
#
# To change the code, edit the vendored file, then regenerate its patch:
#   diff -u --label a/PATH --label b/PATH <(pristine PATH) vendor/rtc/PATH > vendor/rtc/patches/NNNN-….patch
# (`--pristine DIR` leaves the unpatched crate in DIR for that).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

VERSION=0.21.1
SHA256=4e2ca201de5ccc83aa3c08d49a2f08d7ed0aeeb2052fb1ccc517a8b77a6927ce
# What of the crate Witness keeps: the library and its licences.
KEPT=(Cargo.toml LICENSE-APACHE LICENSE-MIT src)

mode=${1:---check}
apt_install curl git
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crate="$work/rtc-$VERSION.crate"
curl -sSfL -o "$crate" "https://static.crates.io/crates/rtc/rtc-$VERSION.crate"
actual=$(sha256sum "$crate" | cut -d' ' -f1)
if [ "$actual" != "$SHA256" ]; then
  echo "rtc $VERSION: SHA-256 $actual, expected $SHA256" >&2
  exit 1
fi
tar -xzf "$crate" -C "$work"
built="$work/built"
mkdir "$built"
for path in "${KEPT[@]}"; do cp -r "$work/rtc-$VERSION/$path" "$built/"; done
if [ "$mode" = "--pristine" ]; then
  rm -rf "${2:?--pristine DIR}" && cp -r "$built" "$2"
  echo "rtc $VERSION, unpatched, in $2"
  exit 0
fi
repo=$(pwd)
for patch in vendor/rtc/patches/*.patch; do
  (cd "$built" && git apply -p1 "$repo/$patch") || { echo "$patch does not apply to rtc $VERSION" >&2; exit 1; }
done
case "$mode" in
  --check)
    if ! diff -r --exclude=PATCHES.md --exclude=patches "$built" vendor/rtc; then
      echo "vendor/rtc is not rtc $VERSION with vendor/rtc/patches applied (see the diff above)" >&2
      exit 1
    fi
    echo "vendor/rtc: rtc $VERSION ($SHA256) with $(ls vendor/rtc/patches/*.patch | wc -l) patches"
    ;;
  --write)
    for path in "${KEPT[@]}"; do rm -rf "vendor/rtc/$path"; cp -r "$built/$path" vendor/rtc/; done
    echo "vendor/rtc rebuilt: rtc $VERSION with vendor/rtc/patches"
    ;;
  *) echo "usage: $0 [--check | --write | --pristine DIR]" >&2; exit 2 ;;
esac
