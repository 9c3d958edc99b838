//! Statistics for accuracy-versus-tokens claims.
//!
//! - [`wilson_ci`]: 95% Wilson score interval of a proportion (well-behaved at 0 and n);
//! - [`mean`], [`median`], [`percentile`]: summary of token counts and latencies
//!   (percentiles interpolate linearly between order statistics);
//! - [`mcnemar_exact`]: two-sided exact McNemar test on paired correctness;
//! - [`paired_bootstrap_ratio`]: seeded paired bootstrap CI of a token ratio;
//! - [`pareto_front`]: runs not dominated in (higher accuracy, fewer tokens);
//! - [`eff_at_k_tokens`]: expected fewest tokens to a correct answer among k samples,
//!   an unbiased estimator in the spirit of ENAMEL's eff@k (derivation on the function).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` out of `n` at normal quantile `z`.
/// With `n == 0` nothing is known and the interval is [0, 1].
pub fn wilson_ci(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = successes.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * ((p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt()) / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// Percentile `p` in [0, 100] with linear interpolation between order statistics
/// (the "type 7" definition of R and numpy's default).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    let low = *sorted.get(lo)?;
    let high = *sorted.get(hi)?;
    Some(low + (high - low) * frac)
}

/// Exact two-sided McNemar test: `b` = pairs right only in the first run, `c` = right
/// only in the second. Under the null each discordant pair is a fair coin, so the
/// p-value is `min(1, 2 · P[X ≤ min(b, c)])` with `X ~ Binomial(b + c, 1/2)`.
/// No discordant pairs gives p = 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum binomial terms in log space: ln C(n, i) built incrementally.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64;
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose - ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// A ratio with its bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioCi {
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Ratio of totals `sum(treatment) / sum(baseline)` over paired problems, with a
/// percentile 95% CI from `iterations` paired bootstrap resamples (problems drawn with
/// replacement, keeping each pair together). Seeded, so reports are reproducible.
/// `None` when there are no pairs, the slices differ in length, or the baseline
/// total is zero.
pub fn paired_bootstrap_ratio(
    baseline: &[f64],
    treatment: &[f64],
    iterations: usize,
    seed: u64,
) -> Option<RatioCi> {
    let n = baseline.len();
    if n == 0 || treatment.len() != n {
        return None;
    }
    let total_base: f64 = baseline.iter().sum();
    if total_base <= 0.0 {
        return None;
    }
    let ratio = treatment.iter().sum::<f64>() / total_base;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ratios = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let mut base = 0.0;
        let mut treat = 0.0;
        for _ in 0..n {
            let i = rng.gen_range(0..n);
            base += baseline.get(i).copied().unwrap_or(0.0);
            treat += treatment.get(i).copied().unwrap_or(0.0);
        }
        if base > 0.0 {
            ratios.push(treat / base);
        }
    }
    Some(RatioCi {
        ratio,
        lo: percentile(&ratios, 2.5).unwrap_or(ratio),
        hi: percentile(&ratios, 97.5).unwrap_or(ratio),
    })
}

/// Indices of the points on the Pareto front of (accuracy ↑, tokens ↓): no other
/// point has accuracy ≥ and tokens ≤ with one of them strict. Returned in order of
/// increasing tokens.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominated = |i: usize| {
        let (acc_i, tok_i) = points[i];
        points.iter().enumerate().any(|(j, &(acc_j, tok_j))| {
            j != i && acc_j >= acc_i && tok_j <= tok_i && (acc_j > acc_i || tok_j < tok_i)
        })
    };
    let mut front: Vec<usize> = (0..points.len()).filter(|&i| !dominated(i)).collect();
    front.sort_by(|&a, &b| points[a].1.total_cmp(&points[b].1));
    front
}

/// Unbiased estimate of the expected fewest tokens to a correct answer when `k`
/// samples are drawn for a problem, from `n ≥ k` samples `(tokens, correct)`.
///
/// A sample's cost is its token count if it is correct, and `failure_cost` (for
/// example the `max_tokens` budget) if it is wrong; a k-draw with no correct sample
/// therefore costs `failure_cost`, which keeps the expectation finite and rewards
/// accuracy as ENAMEL's eff@k does. Sort the n costs ascending, `c(1) ≤ … ≤ c(n)`.
/// In a uniformly random k-subset of the n samples, `c(i)` is the minimum exactly
/// when sample i is in the subset and the other k − 1 members come from the n − i
/// samples after it, which happens in `C(n−i, k−1)` of the `C(n, k)` subsets, so
///
/// ```text
/// eff@k = Σ_{i=1}^{n} C(n−i, k−1) / C(n, k) · c(i)
/// ```
///
/// is the mean over all k-subsets of the subset minimum; since the n samples are
/// i.i.d., it is an unbiased estimator of E[min of k fresh samples]. Ties do not
/// matter (tied costs are equal). The weights follow `w(1) = k/n` and
/// `w(i+1) = w(i) · (n−i−k+1)/(n−i)`, which avoids huge binomials.
/// Returns `None` unless `1 ≤ k ≤ n`.
pub fn eff_at_k_tokens(samples: &[(f64, bool)], k: usize, failure_cost: f64) -> Option<f64> {
    let n = samples.len();
    if k == 0 || k > n {
        return None;
    }
    let mut costs: Vec<f64> = samples
        .iter()
        .map(|&(tokens, correct)| if correct { tokens } else { failure_cost })
        .collect();
    costs.sort_by(f64::total_cmp);
    let mut weight = k as f64 / n as f64;
    let mut expected = 0.0;
    for (index, cost) in costs.iter().enumerate() {
        let i = index + 1;
        expected += weight * cost;
        if i + k > n {
            break;
        }
        weight *= (n - i - k + 1) as f64 / (n - i) as f64;
    }
    Some(expected)
}

/// Unbiased pass@k: probability that at least one of k samples drawn from `n`
/// samples with `correct` right ones is right, `1 − C(n−c, k)/C(n, k)`.
pub fn pass_at_k(n: usize, correct: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || correct > n {
        return None;
    }
    if n - correct < k {
        return Some(1.0);
    }
    let mut all_wrong = 1.0;
    for i in (n - correct + 1)..=n {
        all_wrong *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - all_wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_reference_values() {
        // Reference: statsmodels proportion_confint(8, 10, method="wilson").
        let (lo, hi) = wilson_ci(8, 10, Z95);
        assert!(close(lo, 0.490_162, 1e-5), "{lo}");
        assert!(close(hi, 0.943_317, 1e-5), "{hi}");
        let (lo, hi) = wilson_ci(0, 20, Z95);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.161_125, 1e-5), "{hi}");
        let (lo, hi) = wilson_ci(20, 20, Z95);
        assert!(close(lo, 0.838_875, 1e-5), "{lo}");
        assert_eq!(hi, 1.0);
        assert_eq!(wilson_ci(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn summary_statistics_interpolate() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(mean(&v), Some(3.0));
        assert_eq!(median(&v), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert!(close(percentile(&v, 90.0).unwrap(), 4.6, 1e-12));
        assert_eq!(percentile(&[7.0], 90.0), Some(7.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn mcnemar_exact_matches_binomial_tail() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b=0, c=5: 2 · (1/2)^5 = 0.0625.
        assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-12));
        // b=2, c=8: 2 · (1 + 10 + 45) / 1024 = 0.109375.
        assert!(close(mcnemar_exact(2, 8), 0.109_375, 1e-12));
        assert!(close(mcnemar_exact(8, 2), 0.109_375, 1e-12));
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // Large counts stay finite and tiny when the split is lopsided.
        let p = mcnemar_exact(100, 400);
        assert!(p > 0.0 && p < 1e-30, "{p}");
    }

    #[test]
    fn bootstrap_ratio_is_seeded_and_brackets_the_ratio() {
        let base: Vec<f64> = (1..=50).map(|i| 100.0 + i as f64).collect();
        let treat: Vec<f64> = base.iter().map(|b| b * 0.5 + 3.0).collect();
        let a = paired_bootstrap_ratio(&base, &treat, 500, 1).unwrap();
        let b = paired_bootstrap_ratio(&base, &treat, 500, 1).unwrap();
        assert_eq!(a, b);
        let expected = treat.iter().sum::<f64>() / base.iter().sum::<f64>();
        assert!(close(a.ratio, expected, 1e-12));
        assert!(a.lo <= a.ratio && a.ratio <= a.hi);
        assert!(a.hi - a.lo < 0.01, "{a:?}");
        assert_eq!(paired_bootstrap_ratio(&[], &[], 10, 1), None);
        assert_eq!(paired_bootstrap_ratio(&[0.0], &[1.0], 10, 1), None);
    }

    #[test]
    fn pareto_front_keeps_non_dominated_points_by_tokens() {
        let points = [
            (0.8, 500.0),
            (0.7, 200.0),
            (0.6, 300.0),
            (0.8, 600.0),
            (0.9, 900.0),
        ];
        assert_eq!(pareto_front(&points), [1, 0, 4]);
        assert_eq!(pareto_front(&[(0.5, 1.0), (0.5, 1.0)]), [0, 1]);
        assert!(pareto_front(&[]).is_empty());
    }

    fn brute_force_eff(samples: &[(f64, bool)], k: usize, failure: f64) -> f64 {
        let n = samples.len();
        let mut total = 0.0;
        let mut subsets = 0usize;
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != k {
                continue;
            }
            let best = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| if samples[i].1 { samples[i].0 } else { failure })
                .fold(f64::INFINITY, f64::min);
            total += best;
            subsets += 1;
        }
        total / subsets as f64
    }

    #[test]
    fn eff_at_k_equals_brute_force_enumeration() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let n = rng.gen_range(1..=9);
            let samples: Vec<(f64, bool)> = (0..n)
                .map(|_| (rng.gen_range(10..500) as f64, rng.gen_bool(0.5)))
                .collect();
            for k in 1..=n {
                let estimate = eff_at_k_tokens(&samples, k, 1000.0).unwrap();
                let exact = brute_force_eff(&samples, k, 1000.0);
                assert!(
                    close(estimate, exact, 1e-9),
                    "n={n} k={k}: {estimate} vs {exact}"
                );
            }
        }
        assert_eq!(eff_at_k_tokens(&[(1.0, true)], 2, 9.0), None);
        assert_eq!(eff_at_k_tokens(&[(1.0, true)], 0, 9.0), None);
        // k = 1 is the mean cost; k = n is the overall minimum.
        let s = [(100.0, true), (50.0, false), (300.0, true)];
        assert!(close(
            eff_at_k_tokens(&s, 1, 1000.0).unwrap(),
            1400.0 / 3.0,
            1e-9
        ));
        assert!(close(eff_at_k_tokens(&s, 3, 1000.0).unwrap(), 100.0, 1e-9));
    }

    #[test]
    fn pass_at_k_matches_closed_form() {
        assert_eq!(pass_at_k(5, 0, 2), Some(0.0));
        assert_eq!(pass_at_k(5, 4, 2), Some(1.0));
        // n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 0.5.
        assert!(close(pass_at_k(4, 1, 2).unwrap(), 0.5, 1e-12));
        assert_eq!(pass_at_k(3, 1, 4), None);
    }
}
