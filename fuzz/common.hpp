// Shared by the libFuzzer harnesses: what counts as a finding.
//
// Every harness feeds arbitrary bytes to one reader. The reader may accept them or throw diffuse::error;
// anything else is a finding: another exception type escapes LLVMFuzzerTestOneInput and aborts, and
// AddressSanitizer / UndefinedBehaviorSanitizer (built in by scripts/ci-fuzz.sh) stop on memory errors,
// leaks and undefined behaviour. Harnesses also check invariants of accepted inputs with require().
#pragma once

#include <cstdio>
#include <cstdlib>

namespace fuzz {

/// Aborts with a message when an accepted input breaks an invariant the library promises.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace fuzz
