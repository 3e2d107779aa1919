#!/usr/bin/env bash
# install_test.sh — installs the build tree into a temporary prefix and
# builds an outside program against it twice, with pkg-config and with
# CMake find_package(tmfalloc), and a C++ one with pkg-config; runs them;
# checks that the man pages format and that the installed tmf runs.
#   usage: install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tmfinstall.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(cd "$prefix" && ls -d lib*/libtmfalloc.so | head -1 | xargs dirname)
for f in include/tmfalloc.h include/tmfalloc.hpp "$libdir"/libtmfalloc.so "$libdir"/libtmfalloc.so.0 \
         "$libdir"/libtmfalloc.a "$libdir"/libtmfpreload.so bin/tmf \
         "$libdir"/pkgconfig/tmfalloc.pc "$libdir"/cmake/tmfalloc/tmfallocConfig.cmake \
         share/man/man1/tmf.1 share/man/man3/tmfalloc.3; do
    [ -e "$prefix/$f" ] || fail "missing $f"
done
[ -L "$prefix/$libdir/libtmfalloc.so" ] || fail "libtmfalloc.so is not a soname symlink"

mkdir "$tmp/app"
cat > "$tmp/app/app.c" <<'C'
#include <stdio.h>
#include <tmfalloc.h>
struct root { long runs; };
int main(void)
{
    struct root *r = tm_root(sizeof *r);
    if (!r || tm_begin() != 0)
        return 1;
    r->runs++;
    if (tm_commit() != 0)
        return 1;
    printf("run %ld\n", r->runs);
    return 0;
}
C
cat > "$tmp/app/app.cpp" <<'C'
#include <cstdio>
#include <vector>
#include <tmfalloc.hpp>
int main()
{
    auto &runs = tmf::root<std::vector<int, tmf::allocator<int>>>();
    tmf::run([&] { runs.push_back(static_cast<int>(runs.size()) + 1); });
    std::printf("c++ run %d\n", runs.back());
}
C
cat > "$tmp/app/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.16)
project(app C)
find_package(tmfalloc 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE tmfalloc::tmfalloc)
add_executable(app_static app.c)
target_link_libraries(app_static PRIVATE tmfalloc::tmfalloc_static)
C

# pkg-config
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
command -v pkg-config >/dev/null || fail "pkg-config is not installed"
# shellcheck disable=SC2046
cc -o "$tmp/app_pc" "$tmp/app/app.c" $(pkg-config --cflags --libs tmfalloc)
pkg-config --static --libs tmfalloc | grep -q -- -lpthread || fail "Libs.private lacks -lpthread"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror -o "$tmp/app_cpp" "$tmp/app/app.cpp" $(pkg-config --cflags --libs tmfalloc)

# CMake
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/app/build" >/dev/null

export LD_LIBRARY_PATH=$prefix/$libdir
cd "$tmp"
out=$(TMF_PATH=$tmp/a.tmf ./app_pc; TMF_PATH=$tmp/a.tmf ./app/build/app; TMF_PATH=$tmp/a.tmf ./app/build/app_static)
[ "$out" = "$(printf 'run 1\nrun 2\nrun 3')" ] || fail "unexpected output: $out"
out=$(TMF_PATH=$tmp/cpp.tmf ./app_cpp; TMF_PATH=$tmp/cpp.tmf ./app_cpp)
[ "$out" = "$(printf 'c++ run 1\nc++ run 2')" ] || fail "unexpected output of the C++ program: $out"
"$prefix/bin/tmf" check "$tmp/a.tmf" | grep -q ': clean' || fail "installed tmf check failed"

# man pages
for page in share/man/man1/tmf.1 share/man/man3/tmfalloc.3; do
    if command -v groff >/dev/null; then
        warn=$(groff -man -Tutf8 -ww "$prefix/$page" 2>&1 >/dev/null)
        [ -z "$warn" ] || fail "$page: $warn"
    elif command -v mandoc >/dev/null; then
        mandoc -Tlint "$prefix/$page" >/dev/null || fail "$page does not format"
    else
        echo "install_test: no roff formatter; man pages not formatted"
    fi
done
echo "install_test: ok"
