#pragma once
/// \file
/// Library version and the inline version namespace.

#define DIFFUSE_VERSION_MAJOR 0
#define DIFFUSE_VERSION_MINOR 1
#define DIFFUSE_VERSION_PATCH 0

/// Every public name lives in diffuse::v0 (inline), so a future ABI break can coexist with this one.
#define DIFFUSE_BEGIN_NAMESPACE inline namespace v0 {
#define DIFFUSE_END_NAMESPACE }
