# Cross build for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu, tested under qemu-user:
#
#   cmake -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-arm -j && (cd build-arm && ctest)
#
# ctest runs every test binary through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64 with the
# cross sysroot). qemu emulates its default CPU ("max": dotprod, i8mm, fp16); QEMU_CPU in the
# environment picks another, e.g. `QEMU_CPU=cortex-a53 ctest` for a CPU without dotprod.
# Libraries (GoogleTest, Google Benchmark) come from Debian multiarch:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install g++-aarch64-linux-gnu qemu-user libgtest-dev:arm64 libbenchmark-dev:arm64
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# The cross sysroot first, then multiarch /usr (whose arm64 libraries live in lib/aarch64-linux-gnu,
# and whose header-only packages, CLI11 and nlohmann-json, serve every architecture).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config sees the target's .pc files only (libsentencepiece-dev is host-only here, so the
# converter, which needs it, is not cross-built: tools/test-aarch64.sh uses the host's).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

# The dynamic loader and libc must come from the same build: with -L alone, qemu takes ld.so from
# the cross sysroot but the loader then finds multiarch libc6:arm64 (installed with the arm64
# GoogleTest) first, and the mix hangs in the first pthread call. LD_LIBRARY_PATH keeps libc,
# libstdc++ and ld.so together from the sysroot; only libbenchmark comes from multiarch.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu
    -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
