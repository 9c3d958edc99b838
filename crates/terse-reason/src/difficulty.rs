//! The difficulty probe (DiffAdapt): two logistic models on the final hidden state
//! of a prompt's last position, predicting whether plain chain of thought will get
//! the problem right and whether it will run longer than the median. `terse
//! train-probe` fits them on a plain-CoT eval run and writes them beside the model,
//! with the model file's fingerprint, so a probe is never used with another model.
//!
//! The fit is plain full-batch gradient descent on standardised features with an L2
//! penalty (the hidden states have more dimensions than there are training problems,
//! so the penalty is what keeps the fit from memorising them). The quality reported
//! is the area under the ROC curve of k-fold cross-validation on the training run
//! ([`auc`] of [`cross_validated_scores`]).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A logistic model on standardised features: p = σ(w·z + b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// How a logistic model is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// L2 penalty on the weights (not the bias), per example.
    pub l2: f64,
    pub learning_rate: f64,
    pub epochs: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            l2: 1.0,
            learning_rate: 0.1,
            epochs: 300,
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Logistic {
    /// Minimises the mean log-loss plus `l2/2·|w|²` over `(features, labels)` by
    /// gradient descent from zero.
    pub fn fit(features: &[Vec<f64>], labels: &[bool], options: &FitOptions) -> Logistic {
        let dim = features.first().map_or(0, Vec::len);
        let mut model = Logistic {
            weights: vec![0.0; dim],
            bias: 0.0,
        };
        let n = features.len().max(1) as f64;
        let mut grad = vec![0.0; dim];
        for _ in 0..options.epochs {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut grad_bias = 0.0;
            for (x, &y) in features.iter().zip(labels) {
                let err = model.probability(x) - f64::from(u8::from(y));
                for (g, xi) in grad.iter_mut().zip(x) {
                    *g += err * xi;
                }
                grad_bias += err;
            }
            for (w, g) in model.weights.iter_mut().zip(&grad) {
                *w -= options.learning_rate * (g / n + options.l2 * *w);
            }
            model.bias -= options.learning_rate * grad_bias / n;
        }
        model
    }

    pub fn probability(&self, x: &[f64]) -> f64 {
        let z: f64 = self.weights.iter().zip(x).map(|(w, x)| w * x).sum();
        sigmoid(z + self.bias)
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a
/// random negative (ties count half). `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &l)| !l)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let wins: f64 = pos
        .iter()
        .map(|p| {
            neg.iter()
                .map(|n| match p.partial_cmp(n) {
                    Some(std::cmp::Ordering::Greater) => 1.0,
                    Some(std::cmp::Ordering::Equal) => 0.5,
                    _ => 0.0,
                })
                .sum::<f64>()
        })
        .sum();
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Per-dimension mean and scale (standard deviation, 1 where it is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    pub fn fit(rows: &[&[f32]]) -> Standardizer {
        let dim = rows.first().map_or(0, |r| r.len());
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; dim];
        for x in rows {
            for (m, v) in mean.iter_mut().zip(*x) {
                *m += f64::from(*v) / n;
            }
        }
        let mut var = vec![0.0; dim];
        for x in rows {
            for ((s, v), m) in var.iter_mut().zip(*x).zip(&mean) {
                let d = f64::from(*v) - m;
                *s += d * d / n;
            }
        }
        let scale = var
            .into_iter()
            .map(|v| if v > 0.0 { v.sqrt() } else { 1.0 })
            .collect();
        Standardizer { mean, scale }
    }

    pub fn apply(&self, x: &[f32]) -> Vec<f64> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (f64::from(*v) - m) / s)
            .collect()
    }
}

/// A deterministic shuffle (SplitMix64 driving Fisher–Yates), for fold assignment.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Out-of-fold probabilities: each example is scored by a model fitted (standardiser
/// included) on the other folds, as a probe trained without it would score it.
pub fn cross_validated_scores(
    hidden: &[Vec<f32>],
    labels: &[bool],
    folds: usize,
    seed: u64,
    options: &FitOptions,
) -> Vec<f64> {
    let folds = folds.clamp(2, hidden.len().max(2));
    let order = shuffled(hidden.len(), seed);
    let mut scores = vec![0.0; hidden.len()];
    for fold in 0..folds {
        let held: Vec<usize> = order.iter().copied().skip(fold).step_by(folds).collect();
        let train: Vec<usize> = (0..hidden.len()).filter(|i| !held.contains(i)).collect();
        let rows: Vec<&[f32]> = train.iter().map(|&i| hidden[i].as_slice()).collect();
        let standardizer = Standardizer::fit(&rows);
        let z: Vec<Vec<f64>> = train
            .iter()
            .map(|&i| standardizer.apply(&hidden[i]))
            .collect();
        let y: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let model = Logistic::fit(&z, &y, options);
        for &i in &held {
            scores[i] = model.probability(&standardizer.apply(&hidden[i]));
        }
    }
    scores
}

/// The trained probe, as written next to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifficultyProbe {
    /// `sha256:…` of the GGUF file it was trained on.
    pub model_fingerprint: String,
    pub hidden_size: usize,
    pub standardizer: Standardizer,
    /// P(plain chain of thought answers right).
    pub correct: Logistic,
    /// P(plain chain of thought runs longer than `median_tokens`).
    pub long: Logistic,
    pub median_tokens: f64,
    /// Training problems, and the cross-validated AUC of each model on them.
    pub trained_on: usize,
    pub folds: usize,
    pub cv_auc_correct: Option<f64>,
    pub cv_auc_long: Option<f64>,
    /// The eval run it was trained on.
    pub source_run: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read the difficulty probe {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a difficulty probe: {source}")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the difficulty probe {path} was trained for model {trained} but the model loaded \
         is {loaded}; train one for it with `terse train-probe`"
    )]
    WrongModel {
        path: PathBuf,
        trained: String,
        loaded: String,
    },
    #[error("the difficulty probe {path} expects hidden states of {expected} values, got {got}")]
    WrongSize {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
}

/// Where the probe of a model file lives: beside it.
pub fn probe_path(model_file: &Path) -> PathBuf {
    model_file.with_extension("difficulty-probe.json")
}

impl DifficultyProbe {
    /// Reads a probe and checks it was trained for the model whose fingerprint is
    /// `loaded` and hidden size is `hidden_size`.
    pub fn load(path: &Path, loaded: &str, hidden_size: usize) -> Result<Self, ProbeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProbeError::Io {
            path: path.into(),
            source,
        })?;
        let probe: DifficultyProbe =
            serde_json::from_str(&text).map_err(|source| ProbeError::Malformed {
                path: path.into(),
                source,
            })?;
        if probe.model_fingerprint != loaded {
            return Err(ProbeError::WrongModel {
                path: path.into(),
                trained: probe.model_fingerprint,
                loaded: loaded.into(),
            });
        }
        if probe.hidden_size != hidden_size || probe.standardizer.mean.len() != hidden_size {
            return Err(ProbeError::WrongSize {
                path: path.into(),
                expected: probe.hidden_size,
                got: hidden_size,
            });
        }
        Ok(probe)
    }

    /// P(right) and P(long) for a prompt's hidden state.
    pub fn predict(&self, hidden: &[f32]) -> (f64, f64) {
        let z = self.standardizer.apply(hidden);
        (self.correct.probability(&z), self.long.probability(&z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpenalised_fit_on_one_binary_feature_matches_the_closed_form() {
        // With one 0/1 feature the maximum-likelihood logistic model is closed form:
        // b = logit(p0), w = logit(p1) − logit(p0), p_k the positive rate at x = k.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (feature, positives, total) in [(0.0, 2, 8), (1.0, 6, 8)] {
            for i in 0..total {
                x.push(vec![feature]);
                y.push(i < positives);
            }
        }
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let model = Logistic::fit(
            &x,
            &y,
            &FitOptions {
                l2: 0.0,
                learning_rate: 1.0,
                epochs: 20_000,
            },
        );
        assert!((model.bias - logit(0.25)).abs() < 1e-3, "{model:?}");
        assert!(
            (model.weights[0] - (logit(0.75) - logit(0.25))).abs() < 1e-3,
            "{model:?}"
        );
    }

    #[test]
    fn auc_counts_ordered_pairs_and_ties_half() {
        assert_eq!(
            auc(&[0.9, 0.8, 0.3, 0.1], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[0.1, 0.3, 0.8, 0.9], &[true, true, false, false]),
            Some(0.0)
        );
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        // 2 positives × 2 negatives: pairs won 1 + 0.5 + 1 + 1 of 4.
        assert_eq!(
            auc(&[0.6, 0.4, 0.4, 0.2], &[true, true, false, false]),
            Some(0.875)
        );
        assert_eq!(auc(&[0.5], &[true]), None);
    }

    #[test]
    fn cross_validation_finds_a_signal_in_one_dimension_among_noise() {
        // Dimension 0 carries the label; the other 15 are deterministic noise.
        let mut hidden = Vec::new();
        let mut labels = Vec::new();
        let order = shuffled(80, 7);
        for (i, &k) in order.iter().enumerate() {
            let label = i % 2 == 0;
            let mut h: Vec<f32> = (0..16)
                .map(|d| ((k * 31 + d * 17) % 23) as f32 / 23.0)
                .collect();
            h[0] = if label { 1.0 } else { -1.0 } + h[1] * 0.5;
            hidden.push(h);
            labels.push(label);
        }
        let scores = cross_validated_scores(&hidden, &labels, 5, 1, &FitOptions::default());
        let auc = super::auc(&scores, &labels).unwrap();
        assert!(auc > 0.95, "{auc}");
        let flipped: Vec<bool> = labels.iter().map(|l| !l).collect();
        let scores = cross_validated_scores(&hidden, &flipped, 5, 1, &FitOptions::default());
        let auc = super::auc(&scores, &flipped).unwrap();
        assert!(auc > 0.95, "the model learns the sign: {auc}");
    }

    #[test]
    fn a_probe_for_another_model_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.difficulty-probe.json");
        let probe = DifficultyProbe {
            model_fingerprint: "sha256:aaaa".into(),
            hidden_size: 2,
            standardizer: Standardizer {
                mean: vec![0.0, 0.0],
                scale: vec![1.0, 1.0],
            },
            correct: Logistic {
                weights: vec![1.0, 0.0],
                bias: 0.0,
            },
            long: Logistic {
                weights: vec![0.0, 1.0],
                bias: 0.0,
            },
            median_tokens: 200.0,
            trained_on: 10,
            folds: 5,
            cv_auc_correct: Some(0.7),
            cv_auc_long: None,
            source_run: "runs/x".into(),
        };
        std::fs::write(&path, serde_json::to_string(&probe).unwrap()).unwrap();
        assert_eq!(
            DifficultyProbe::load(&path, "sha256:aaaa", 2).unwrap(),
            probe
        );
        let err = DifficultyProbe::load(&path, "sha256:bbbb", 2).unwrap_err();
        assert!(matches!(err, ProbeError::WrongModel { .. }), "{err}");
        assert!(err.to_string().contains("sha256:bbbb"), "{err}");
        let err = DifficultyProbe::load(&path, "sha256:aaaa", 3).unwrap_err();
        assert!(matches!(err, ProbeError::WrongSize { .. }), "{err}");
        let (right, long) = probe.predict(&[2.0, -2.0]);
        assert!(right > 0.8 && long < 0.2);
    }
}
