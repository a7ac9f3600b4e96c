// The two numpy operations whose exact bits decide near-ties in LLMLingua-2's threshold:
// np.add.reduceat on float32 (numpy's pairwise summation) and np.percentile (linear method).
// The core is compiled with -ffp-contract=off so no a*b+c becomes an FMA (phones' compilers
// contract by default, which would change last bits).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace compkit {

// numpy's pairwise_sum (loops_utils.h): blocks of 8 accumulators below 128 elements, halves above.
template <typename T>
T pairwise_sum(const T* a, size_t n) {
  if (n < 8) {
    T res = T(0);  // numpy starts from 0. (an exact zero: -0.0 + 0 quirks cannot arise for sums of probabilities)
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (int k = 0; k < 8; ++k) r[k] = a[k];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[i + k];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// A reduction over one segment: the first element, then the pairwise sum of the rest added to it.
template <typename T>
T segment_sum(const T* a, size_t n) {
  return n == 0 ? T(0) : a[0] + pairwise_sum(a + 1, n - 1);
}

// np.percentile(values, q) for an integer q (a weak Python int: the result keeps T's precision and
// the interpolation weight is rounded to T, as numpy >= 2 does).
template <typename T>
T percentile(std::vector<T> v, int q) {
  const size_t n = v.size();
  const double index = static_cast<double>(n - 1) * (static_cast<double>(q) / 100.0);
  const double below = std::floor(index);
  size_t lo, hi;
  if (index >= static_cast<double>(n - 1)) {
    lo = hi = n - 1;
  } else {
    lo = static_cast<size_t>(below);
    hi = lo + 1;
  }
  const double gamma = index - below;
  std::sort(v.begin(), v.end());
  const T a = v[lo], b = v[hi];
  const T diff = b - a;
  if (gamma >= 0.5) return b - diff * static_cast<T>(1.0 - gamma);
  return a + diff * static_cast<T>(gamma);
}

}  // namespace compkit
