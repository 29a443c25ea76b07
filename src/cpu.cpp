// CPU feature probe: cpuid + xgetbv on x86-64, getauxval on aarch64 Linux/Android.
#include "mobilellm/cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace mobilellm {

namespace {

CpuFeatures Probe() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  unsigned xcr0 = 0;
  if (osxsave) {
    unsigned hi;
    __asm__("xgetbv" : "=a"(xcr0), "=d"(hi) : "c"(0));
  }
  const bool ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xE6) == 0xE6;
  if (!ymm_os) f.fma = f.f16c = false;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = ymm_os && (b & (1u << 5));
    f.avx512f = zmm_os && (b & (1u << 16));
    f.avx512bw = zmm_os && (b & (1u << 30));
    f.avx512vl = zmm_os && (b & (1u << 31));
    f.avx512vnni = zmm_os && (c & (1u << 11));
    // AMX-TILE (EDX 24) and AMX-INT8 (EDX 25), with XCR0's tile state (bits 17, 18) enabled.
    // Linux hands out the 8 KB of tile data only on request (Documentation/arch/x86/xstate.rst):
    // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA (18), granted to the whole process.
    f.amx_int8 = (d & (3u << 24)) == (3u << 24) && (xcr0 & (3u << 17)) == (3u << 17);
#if defined(__linux__)
    if (f.amx_int8) f.amx_int8 = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    f.amx_int8 = false;
#endif
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avxvnni = ymm_os && (a & (1u << 4));
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  f.dotprod = hw & HWCAP_ASIMDDP;
  f.i8mm = hw2 & HWCAP2_I8MM;
#elif defined(__APPLE__)
  const auto has = [](const char* name) {
    int v = 0;
    size_t n = sizeof(v);
    return sysctlbyname(name, &v, &n, nullptr, 0) == 0 && v != 0;
  };
  f.dotprod = has("hw.optional.arm.FEAT_DotProd");
  f.i8mm = has("hw.optional.arm.FEAT_I8MM");
#endif
#endif
  return f;
}

}  // namespace

const CpuFeatures& CpuFeatures::Get() {
  static const CpuFeatures features = Probe();
  return features;
}

std::string CpuFeatures::ToString() const {
  std::string s;
  auto add = [&](bool has, const char* name) {
    if (has) s += (s.empty() ? "" : " ") + std::string(name);
  };
  add(avx2, "avx2"), add(fma, "fma"), add(f16c, "f16c"), add(avx512f, "avx512f");
  add(avx512bw, "avx512bw"), add(avx512vl, "avx512vl"), add(avx512vnni, "avx512vnni");
  add(avxvnni, "avxvnni"), add(amx_int8, "amx-int8"), add(neon, "neon"), add(dotprod, "dotprod"),
      add(i8mm, "i8mm");
  return s.empty() ? "baseline" : s;
}

}  // namespace mobilellm
