#pragma once
/// \file
/// Library version and the inline version namespace.

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
