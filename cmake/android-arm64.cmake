# Android arm64-v8a with the NDK's own toolchain file:
#
#   export ANDROID_NDK=/path/to/android-ndk-r26
#   cmake -B build-android -DCMAKE_TOOLCHAIN_FILE=cmake/android-arm64.cmake
#   cmake --build build-android -j --target mobilellm mobilellm-convert
#   adb push build-android/mobilellm /data/local/tmp/ && adb shell /data/local/tmp/mobilellm --help
#
# The engine needs nothing beyond the NDK (the tokenizer is our own); the CLI's header-only
# CLI11 and nlohmann-json come from the host (Debian: libcli11-dev, nlohmann-json3-dev). The
# binary is static, so one file copied with adb runs from `adb shell`.
if(NOT DEFINED ENV{ANDROID_NDK} AND NOT DEFINED ANDROID_NDK)
  message(FATAL_ERROR "cmake/android-arm64.cmake: set ANDROID_NDK to the NDK's folder")
endif()
if(NOT DEFINED ANDROID_NDK)
  set(ANDROID_NDK $ENV{ANDROID_NDK})
endif()
set(ANDROID_ABI arm64-v8a CACHE STRING "")
set(ANDROID_PLATFORM android-28 CACHE STRING "")
include(${ANDROID_NDK}/build/cmake/android.toolchain.cmake)

# Host header-only packages (CLI11, nlohmann-json) are arch-independent: let find_package see them.
list(APPEND CMAKE_FIND_ROOT_PATH /usr /usr/local)
set(MOBILELLM_STATIC ON CACHE BOOL "")
set(MOBILELLM_BUILD_TESTS OFF CACHE BOOL "")
set(MOBILELLM_BUILD_BENCH OFF CACHE BOOL "")
