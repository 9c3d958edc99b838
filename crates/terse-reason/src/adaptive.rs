//! `adaptive`: difficulty routing (DiffAdapt). Before decoding, the difficulty probe
//! ([`crate::difficulty`]) reads the final hidden state of the prompt's last position
//! and predicts how plain chain of thought will fare; the problem is classed easy,
//! normal or hard on that prediction and answered by the class's preset, a whole
//! strategy of its own (`be-brief`, `early-exit`, `consistency`, …).
//!
//! The score is the probe's P(plain CoT runs longer than its median) (`signal =
//! "long"`, the default) or P(plain CoT is wrong) (`signal = "wrong"`): below
//! `easy_below` the problem is easy, at or above `hard_above` it is hard, in between
//! normal.
//!
//! ```toml
//! strategy = "adaptive"
//! [adaptive]
//! signal = "long"
//! easy_below = 0.5
//! hard_above = 0.5
//! easy = "be-brief"                     # a chain with default options, or a table:
//! [adaptive.hard]
//! strategy = "consistency"
//! consistency = { max_samples = 3 }
//! ```
//!
//! The probe's pass prefills the plain prompt. A preset that keeps that prompt (no
//! prompt stage) then gets its whole blocks from the automatic prefix cache, so the
//! routing costs the prompt's last partial block again; one that changes it
//! (`be-brief`'s system message) prefills its own. Either way the pass is in the
//! completion's latency, and its prompt tokens are not cost tokens (they are the
//! prompt). The completion is the preset's, with a first event saying which class
//! was chosen, the probe's predictions and the preset.

use crate::{
    Backend, BackendError, Completion, CompletionRequest, Sink, StrategyEvent, StrategySpec,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// What the probe's prediction is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// P(plain chain of thought runs longer than the training run's median).
    #[default]
    Long,
    /// P(plain chain of thought answers wrong).
    Wrong,
}

/// A problem's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Easy,
    Normal,
    Hard,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Easy => "easy",
            Class::Normal => "normal",
            Class::Hard => "hard",
        }
    }
}

/// The probe's predictions for one prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difficulty {
    /// P(plain chain of thought answers right).
    pub p_right: f64,
    /// P(it runs longer than the training run's median).
    pub p_long: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveOptions {
    pub signal: Signal,
    /// A score below this is easy.
    pub easy_below: f64,
    /// A score at or above this is hard (between the two: normal).
    pub hard_above: f64,
    pub easy: StrategySpec,
    pub normal: StrategySpec,
    pub hard: StrategySpec,
    /// The probe file; by default `MODEL.difficulty-probe.json` beside the model.
    pub probe: Option<PathBuf>,
}

/// Option names besides the presets, as `--strategy-opt` takes them.
pub const THRESHOLD_OPTIONS: &[&str] = &["signal", "easy_below", "hard_above", "probe"];
/// The preset option names.
pub const PRESETS: &[&str] = &["easy", "normal", "hard"];

impl Default for AdaptiveOptions {
    fn default() -> Self {
        AdaptiveOptions {
            signal: Signal::Long,
            easy_below: 0.5,
            hard_above: 0.5,
            easy: StrategySpec::default(),
            normal: StrategySpec::default(),
            hard: StrategySpec::default(),
            probe: None,
        }
    }
}

impl AdaptiveOptions {
    pub fn score(&self, d: Difficulty) -> f64 {
        match self.signal {
            Signal::Long => d.p_long,
            Signal::Wrong => 1.0 - d.p_right,
        }
    }

    pub fn classify(&self, d: Difficulty) -> Class {
        let score = self.score(d);
        if score < self.easy_below {
            Class::Easy
        } else if score >= self.hard_above {
            Class::Hard
        } else {
            Class::Normal
        }
    }

    pub fn preset(&self, class: Class) -> &StrategySpec {
        match class {
            Class::Easy => &self.easy,
            Class::Normal => &self.normal,
            Class::Hard => &self.hard,
        }
    }

    pub fn presets(&self) -> [&StrategySpec; 3] {
        [&self.easy, &self.normal, &self.hard]
    }
}

/// Runs `request` through the preset of its class; see the module documentation.
/// Visible text reaches `sink` as the preset gives it.
pub fn complete<B: Backend + ?Sized>(
    backend: &B,
    request: &CompletionRequest,
    options: &AdaptiveOptions,
    sink: Sink<'_>,
) -> Result<Completion, BackendError> {
    let start = Instant::now();
    let difficulty = backend.difficulty(request, options.probe.as_deref())?;
    let class = options.classify(difficulty);
    let preset = options.preset(class).clone();
    let routed = CompletionRequest {
        strategy: preset.clone(),
        ..request.clone()
    };
    let mut completion = backend.complete_with(&routed, sink)?;
    completion.events.insert(
        0,
        StrategyEvent {
            strategy: "adaptive".into(),
            kind: "route".into(),
            at_token: 0,
            detail: Some(route_detail(class, difficulty, &preset)),
            logprob: None,
            probe_tokens: None,
        },
    );
    completion.latency_s = start.elapsed().as_secs_f64();
    Ok(completion)
}

/// The `route` event's detail: `easy (P(long) 0.230, P(right) 0.810) → be-brief`.
pub fn route_detail(class: Class, difficulty: Difficulty, preset: &StrategySpec) -> String {
    format!(
        "{} (P(long) {:.3}, P(right) {:.3}) → {preset}",
        class.name(),
        difficulty.p_long,
        difficulty.p_right
    )
}

/// The class and preset named by a `route` event's detail ([`route_detail`]).
pub fn parse_route(detail: &str) -> Option<(&str, &str)> {
    let (class, rest) = detail.split_once(' ')?;
    let (_, preset) = rest.rsplit_once(" → ")?;
    Some((class, preset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_detail_reads_back_as_its_class_and_preset() {
        let preset = StrategySpec::parse("loop-guard+early-exit", &[]).unwrap();
        let detail = route_detail(Class::Hard, d(0.25, 0.75), &preset);
        assert_eq!(
            detail,
            "hard (P(long) 0.750, P(right) 0.250) → loop-guard+early-exit"
        );
        assert_eq!(
            parse_route(&detail),
            Some(("hard", "loop-guard+early-exit"))
        );
        assert_eq!(parse_route("no arrow here"), None);
    }

    fn d(p_right: f64, p_long: f64) -> Difficulty {
        Difficulty { p_right, p_long }
    }

    #[test]
    fn thresholds_split_the_score_into_three_classes() {
        let options = AdaptiveOptions {
            easy_below: 0.3,
            hard_above: 0.7,
            ..AdaptiveOptions::default()
        };
        assert_eq!(options.classify(d(0.0, 0.29)), Class::Easy);
        assert_eq!(options.classify(d(0.0, 0.3)), Class::Normal);
        assert_eq!(options.classify(d(0.0, 0.69)), Class::Normal);
        assert_eq!(options.classify(d(0.0, 0.7)), Class::Hard);
        let wrong = AdaptiveOptions {
            signal: Signal::Wrong,
            ..options
        };
        assert_eq!(wrong.classify(d(0.9, 0.99)), Class::Easy, "1 − 0.9 < 0.3");
        assert_eq!(wrong.classify(d(0.2, 0.0)), Class::Hard, "1 − 0.2 ≥ 0.7");
    }

    #[test]
    fn equal_thresholds_leave_no_normal_class() {
        let options = AdaptiveOptions::default();
        assert_eq!(options.classify(d(0.5, 0.499)), Class::Easy);
        assert_eq!(options.classify(d(0.5, 0.5)), Class::Hard);
    }
}
