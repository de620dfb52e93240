#pragma once
/// \file
/// Library version and the inline version namespace.

// The library keeps NaN and Inf out of every result with finite checks (std::isfinite, v - v probes,
// !(x >= 0) comparisons). Under -ffast-math, -Ofast or -ffinite-math-only the compiler may assume no
// value is ever NaN or Inf and folds those checks to constants, so a NaN model output would pass every
// step silently. The flag is refused rather than half-honoured; there is no opt-out.
#if defined(__FAST_MATH__)
#error "diffuse: compiled with -ffast-math or -Ofast (__FAST_MATH__ is defined). diffuse's finite checks, which keep NaN and Inf out of every result, would be folded away; build the translation units that include diffuse without -ffast-math/-Ofast (use -O3 instead)."
#elif defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__
#error "diffuse: compiled with -ffinite-math-only (__FINITE_MATH_ONLY__ is 1). diffuse's finite checks, which keep NaN and Inf out of every result, would be folded away; build the translation units that include diffuse without -ffinite-math-only."
#endif

/// Major version: changes that break source compatibility.
#define DIFFUSE_VERSION_MAJOR 0
/// Minor version: additions.
#define DIFFUSE_VERSION_MINOR 1
/// Patch version: fixes.
#define DIFFUSE_VERSION_PATCH 0

/// Every public name lives in diffuse::v0 (inline), so a future ABI break can coexist with this one.
#define DIFFUSE_BEGIN_NAMESPACE inline namespace v0 {
/// Closes the namespace DIFFUSE_BEGIN_NAMESPACE opened.
#define DIFFUSE_END_NAMESPACE }
