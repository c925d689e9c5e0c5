#!/bin/bash -eu
# Builds the libFuzzer targets of Fuzz/ the way OSS-Fuzz builds Swift projects
# (precompile_swift's flags: static Swift stdlib, --sanitize fuzzer and
# $SANITIZER) and puts in $OUT, per target: the binary, <target>.dict and
# <target>_seed_corpus.zip (from corpus/<target>/).
#
# In the builder image: OUT, SRC, SANITIZER (and CFLAGS, CXXFLAGS) come from
# OSS-Fuzz; the project is $SRC/xenblk-harness and libpcap's source $SRC/libpcap.
# Locally (as .ci/run does): OUT=/tmp/out SRC=/tmp/src SANITIZER=address .clusterfuzzlite/build.sh
# — the project is this script's checkout, and without $SRC/libpcap the
# system's libpcap is linked. FUZZ_SCRATCH moves the Swift build directory.

set -o pipefail
targets="FuzzReplay FuzzTraceText FuzzPcap FuzzRequestABI FuzzImport"
here="$(cd "$(dirname "$0")" && pwd)"
if [ -f "$here/../Fuzz/Package.swift" ]; then
    project="$(cd "$here/.." && pwd)"
else
    project="$SRC/xenblk-harness"
fi
mkdir -p "$OUT"

# precompile_swift (builder image only) copies the Swift-aware symbolizer into $OUT.
if command -v precompile_swift >/dev/null 2>&1; then
    . precompile_swift
fi

# libpcap, static and without optional dependencies, when its source is here.
if [ -d "$SRC/libpcap" ]; then
    prefix="${WORK:-/tmp}/libpcap-install"
    (cd "$SRC/libpcap" && ./autogen.sh >/dev/null 2>&1 || true
     cd "$SRC/libpcap" && ./configure --prefix="$prefix" --disable-shared --disable-dbus --disable-rdma \
         --disable-usb --disable-bluetooth --disable-netmap --without-libnl --quiet \
     && make -j"$(nproc)" >/dev/null && make install >/dev/null)
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi

# The flags precompile_swift gives Swift 6 packages (SWIFT6_2FLAGS: no
# -parse-as-library, which breaks the link of SwiftPM executables).
if [ -n "${SWIFT6_2FLAGS:-}" ]; then
    flags="$SWIFT6_2FLAGS"
else
    flags="-Xswiftc -static-stdlib --static-swift-stdlib"
    case "$SANITIZER" in
        coverage) flags="$flags -Xswiftc -profile-generate -Xswiftc -profile-coverage-mapping --sanitize=fuzzer" ;;
        none|"") flags="$flags --sanitize=fuzzer" ;;
        *) flags="$flags --sanitize=fuzzer --sanitize=$SANITIZER" ;;
    esac
fi

scratch="${FUZZ_SCRATCH:-$project/Fuzz/.build-oss-fuzz-$SANITIZER}"
cd "$project/Fuzz"
# shellcheck disable=SC2086
# (gold warns once per sanitizer symbol it cannot export from a static link: noise)
swift build -c release $flags --scratch-path "$scratch" 2>&1 | grep -v 'Cannot export local symbol'
bin="$(swift build -c release $flags --scratch-path "$scratch" --show-bin-path)"

for target in $targets; do
    cp "$bin/$target" "$OUT/$target"
    cp "$project/Fuzz/$target.dict" "$OUT/$target.dict"
    rm -f "$OUT/${target}_seed_corpus.zip"
    if [ -n "$(ls -A "$project/corpus/$target" 2>/dev/null)" ]; then
        (cd "$project/corpus/$target" && zip -q -j "$OUT/${target}_seed_corpus.zip" ./*)
    fi
done
echo "build.sh: $targets in $OUT"
