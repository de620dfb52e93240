// Including diffuse in a translation unit built with -Ofast, which would fold the finite checks away.
// misuse-flags: -Ofast
// expect: __FAST_MATH__
// expect: finite checks, which keep NaN and Inf out of every result, would be folded away
#include <diffuse/ddpm.hpp>

int main() { return diffuse::noise_schedule::linear(10).size() == 10 ? 0 : 1; }
