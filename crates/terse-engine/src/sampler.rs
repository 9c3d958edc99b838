//! Token sampling: a chain in llama.cpp's order (logit bias → penalties → temperature →
//! top-k → top-p → min-p → top-H → draw), seeded, with per-token log-probability and
//! entropy of the model's raw distribution reported to the caller.
//!
//! The candidate buffer is allocated once per sampler, so sampling a token allocates
//! nothing in the decode loop.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Parameters of the sampler chain. `temperature <= 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability mass reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's (0.0 = off).
    pub min_p: f32,
    /// Top-H entropy scale α in (0, 1] (None = off): keep the largest high-probability
    /// prefix whose renormalised entropy stays within α · H(p).
    pub top_h: Option<f32>,
    /// Multiplicative penalty on logits of recently seen tokens (1.0 = off).
    pub repeat_penalty: f32,
    /// Subtracted once from logits of tokens seen in the window (0.0 = off).
    pub presence_penalty: f32,
    /// Subtracted per occurrence from logits of tokens seen in the window (0.0 = off).
    pub frequency_penalty: f32,
    /// How many of the most recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Added to a token's logit before anything else (`f32::NEG_INFINITY` bans it).
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            top_h: None,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// One drawn token with what the model thought of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// log p(id) under the model's raw distribution (log-softmax of the logits).
    pub logprob: f32,
    /// Entropy (nats) of the model's raw next-token distribution.
    pub entropy: f32,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    logit: f32,
    p: f32,
}

/// A seeded sampler chain; keep one per sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: StdRng,
    candidates: Vec<Candidate>,
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Sampler {
            config,
            rng,
            candidates: Vec::new(),
            counts: HashMap::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Draws the next token from `logits` given the tokens generated so far (`history`,
    /// used only by the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> SampledToken {
        let (max_logit, log_z, entropy) = log_partition_and_entropy(logits);
        let logprob_of = |id: u32| {
            logits
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |&l| l - max_logit - log_z)
        };

        let needs_candidates = !self.config.is_greedy()
            || !self.config.logit_bias.is_empty()
            || self.penalties_active();
        if !needs_candidates {
            let id = argmax(logits);
            return SampledToken {
                id,
                logprob: logprob_of(id),
                entropy,
            };
        }

        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
                p: 0.0,
            }));
        self.apply_logit_bias();
        self.apply_penalties(history);

        let id = if self.config.is_greedy() {
            self.candidates
                .iter()
                .fold(None::<Candidate>, |best, c| match best {
                    Some(b) if b.logit >= c.logit => Some(b),
                    _ => Some(*c),
                })
                .map_or(0, |c| c.id)
        } else {
            self.draw()
        };
        SampledToken {
            id,
            logprob: logprob_of(id),
            entropy,
        }
    }

    fn penalties_active(&self) -> bool {
        self.config.penalty_last_n > 0
            && (self.config.repeat_penalty != 1.0
                || self.config.presence_penalty != 0.0
                || self.config.frequency_penalty != 0.0)
    }

    fn apply_logit_bias(&mut self) {
        for &(id, bias) in &self.config.logit_bias {
            if let Some(c) = self.candidates.get_mut(id as usize) {
                c.logit += bias;
            }
        }
    }

    /// llama.cpp's penalties: repeat divides positive logits / multiplies negative ones;
    /// frequency and presence subtract.
    fn apply_penalties(&mut self, history: &[u32]) {
        if !self.penalties_active() {
            return;
        }
        let window = &history[history.len().saturating_sub(self.config.penalty_last_n)..];
        self.counts.clear();
        for &t in window {
            *self.counts.entry(t).or_insert(0) += 1;
        }
        for (&id, &count) in &self.counts {
            let Some(c) = self.candidates.get_mut(id as usize) else {
                continue;
            };
            if c.logit <= 0.0 {
                c.logit *= self.config.repeat_penalty;
            } else {
                c.logit /= self.config.repeat_penalty;
            }
            c.logit -= count as f32 * self.config.frequency_penalty + self.config.presence_penalty;
        }
    }

    /// Temperature, then the truncations, then a draw from what is left.
    fn draw(&mut self) -> u32 {
        let temperature = self.config.temperature;
        for c in self.candidates.iter_mut() {
            c.logit /= temperature;
        }
        let desc = |a: &Candidate, b: &Candidate| b.logit.total_cmp(&a.logit);
        let k = self.config.top_k;
        if k > 0 && k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, desc);
            self.candidates.truncate(k);
        }
        self.candidates.sort_unstable_by(desc);
        softmax_candidates(&mut self.candidates);

        if self.config.top_p < 1.0 {
            let mut mass = 0.0;
            let mut keep = self.candidates.len();
            for (i, c) in self.candidates.iter().enumerate() {
                mass += c.p;
                if mass >= self.config.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.candidates.truncate(keep.max(1));
            softmax_candidates(&mut self.candidates);
        }
        if self.config.min_p > 0.0 {
            let threshold = self.candidates.first().map_or(0.0, |c| c.p) * self.config.min_p;
            let keep = self
                .candidates
                .iter()
                .take_while(|c| c.p >= threshold)
                .count();
            self.candidates.truncate(keep.max(1));
            softmax_candidates(&mut self.candidates);
        }
        if let Some(alpha) = self.config.top_h {
            let keep = top_h_keep(&self.candidates, alpha);
            self.candidates.truncate(keep);
            softmax_candidates(&mut self.candidates);
        }

        let r: f32 = self.rng.gen();
        let mut acc = 0.0;
        for c in &self.candidates {
            acc += c.p;
            if r < acc {
                return c.id;
            }
        }
        self.candidates.last().map_or(0, |c| c.id)
    }
}

/// Top-H ("Top-H Decoding", Baghaei Potraghloo et al. 2025), greedy form: with the
/// candidates sorted by probability p (descending), grow the kept prefix S one token at a
/// time while the entropy of p renormalised on S, H(S) = -Σ_S p ln p / σ + ln σ with
/// σ = Σ_S p, stays ≤ α · H(p). The top token is always kept.
fn top_h_keep(sorted: &[Candidate], alpha: f32) -> usize {
    let h_full: f32 = sorted
        .iter()
        .filter(|c| c.p > 0.0)
        .map(|c| -c.p * c.p.ln())
        .sum();
    let bound = alpha * h_full;
    let mut plogp = 0.0f32;
    let mut sigma = 0.0f32;
    for (i, c) in sorted.iter().enumerate() {
        if c.p <= 0.0 {
            return i.max(1);
        }
        let next_plogp = plogp - c.p * c.p.ln();
        let next_sigma = sigma + c.p;
        let h = next_plogp / next_sigma + next_sigma.ln();
        if i > 0 && h > bound {
            return i;
        }
        plogp = next_plogp;
        sigma = next_sigma;
    }
    sorted.len()
}

fn softmax_candidates(c: &mut [Candidate]) {
    let max = c.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in c.iter_mut() {
        x.p = (x.logit - max).exp();
        sum += x.p;
    }
    if sum > 0.0 {
        for x in c.iter_mut() {
            x.p /= sum;
        }
    }
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// (max logit, log Σ exp(l - max), entropy in nats) of softmax(logits).
pub fn log_partition_and_entropy(logits: &[f32]) -> (f32, f32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return (0.0, 0.0, 0.0);
    }
    let mut z = 0.0f64;
    let mut weighted = 0.0f64;
    for &l in logits {
        let d = (l - max) as f64;
        let e = d.exp();
        z += e;
        weighted += e * d;
    }
    let log_z = z.ln();
    // H = log Z - E[l - max]
    let entropy = log_z - weighted / z;
    (max, log_z as f32, entropy as f32)
}

/// The `n` most likely tokens with their log-probabilities, most likely first.
pub fn top_logprobs(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let (max, log_z, _) = log_partition_and_entropy(logits);
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(idx.len());
    if n == 0 {
        return Vec::new();
    }
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    idx.select_nth_unstable_by(n - 1, by_logit);
    idx.truncate(n);
    idx.sort_by(by_logit);
    idx.into_iter()
        .map(|i| (i, logits[i as usize] - max - log_z))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.5, -1.0, 0.0, 2.9]
    }

    #[test]
    fn greedy_picks_the_largest_logit_and_reports_its_logprob() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        let t = s.sample(&logits(), &[]);
        assert_eq!(t.id, 1);
        let l = logits();
        let z: f32 = l.iter().map(|x| x.exp()).sum();
        assert!((t.logprob - (3.0f32.exp() / z).ln()).abs() < 1e-5);
        let h: f32 = l.iter().map(|x| x.exp() / z).map(|p| -p * p.ln()).sum();
        assert!((t.entropy - h).abs() < 1e-5);
    }

    #[test]
    fn same_seed_gives_same_tokens() {
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 42,
            ..SamplerConfig::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50)
                .map(|_| s.sample(&logits(), &[]).id)
                .collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        let mut other = cfg.clone();
        other.seed = 43;
        assert_ne!(a, draw(&other));
        // A high temperature over 50 draws visits more than one token.
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            temperature: 5.0,
            ..SamplerConfig::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits(), &[]).id, 1);
        }
    }

    #[test]
    fn min_p_removes_unlikely_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            temperature: 1.0,
            ..SamplerConfig::default()
        });
        // p(tok)/p(top) >= 0.5 only for ids 1, 2 (e^-0.5 = 0.61) and 5.
        for _ in 0..200 {
            let id = s.sample(&logits(), &[]).id;
            assert!([1, 2, 5].contains(&id), "drew {id}");
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 0,
            top_p: 0.3,
            min_p: 0.0,
            temperature: 1.0,
            ..SamplerConfig::default()
        });
        // The top token alone carries ~36% of the mass.
        for _ in 0..100 {
            assert_eq!(s.sample(&logits(), &[]).id, 1);
        }
    }

    #[test]
    fn logit_bias_can_ban_a_token() {
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: vec![(1, f32::NEG_INFINITY)],
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&logits(), &[]).id, 5);
    }

    #[test]
    fn repeat_penalty_moves_greedy_off_a_repeated_token() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 1.5,
            ..SamplerConfig::greedy()
        });
        // 3.0 / 1.5 = 2.0 < 2.9
        assert_eq!(s.sample(&logits(), &[1]).id, 5);
    }

    #[test]
    fn top_h_keeps_fewer_tokens_for_smaller_alpha() {
        let mut c: Vec<Candidate> = (0..100)
            .map(|i| Candidate {
                id: i,
                logit: -(i as f32) * 0.1,
                p: 0.0,
            })
            .collect();
        softmax_candidates(&mut c);
        let small = top_h_keep(&c, 0.2);
        let large = top_h_keep(&c, 0.9);
        assert!(
            small >= 1 && small < large && large <= 100,
            "{small} {large}"
        );
        // The kept prefix obeys the bound; one more token would break it.
        let h_full: f32 = c.iter().map(|c| -c.p * c.p.ln()).sum();
        let h_of = |n: usize| {
            let s: f32 = c[..n].iter().map(|c| c.p).sum();
            c[..n].iter().map(|c| -c.p * c.p.ln()).sum::<f32>() / s + s.ln()
        };
        assert!(h_of(small) <= 0.2 * h_full + 1e-5);
        assert!(h_of(small + 1) > 0.2 * h_full);
    }

    #[test]
    fn top_logprobs_are_sorted_and_normalised() {
        let t = top_logprobs(&logits(), 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 5, 2]);
        let total: f32 = logits().iter().map(|&l| (l - 3.0).exp()).sum();
        assert!((t[0].1 - (1.0 / total).ln()).abs() < 1e-5);
    }
}
