//! Instruction-set levels and the one the process runs at.
//!
//! Every level is a complete [`Kernels`] table; the levels differ only in the
//! instructions their kernels use. The active level is chosen once per
//! process and then never changes, so every matmul of a run (and every
//! sequence of a batch) goes through the same kernels:
//!
//! - An application calls [`select`] (or [`select_from_env`]) at start-up to
//!   pick the level and see a bad choice as an error: a name that is no level,
//!   or a level this CPU cannot run.
//! - Otherwise the first kernel call picks it: `TERSE_KERNELS` if set (a bad
//!   value then panics, naming the valid levels), else [`Level::best`].
//!
//! A level joins [`Level::best`]'s choice only once its tests have passed on a
//! CPU that has it (`avx512`: an Intel Xeon of the Sapphire Rapids family).

use crate::{KernelError, Kernels};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that forces a level (`scalar`, `avx2`, `avx512`).
pub const LEVEL_ENV: &str = "TERSE_KERNELS";

/// A set of kernels written for one instruction-set extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The portable reference kernels ([`crate::reference`]).
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen 1 and later).
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL/DQ and VNNI on top of AVX2 (Cascade Lake,
    /// Ice Lake, Sapphire Rapids, Zen 4 and later): 512-bit integer dot
    /// products.
    Avx512,
}

impl Level {
    /// Every level, slowest first.
    pub const ALL: [Level; 3] = [Level::Scalar, Level::Avx2, Level::Avx512];

    /// The name `TERSE_KERNELS` and `--kernels` take.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// The CPU features the level needs, as `lscpu` spells them.
    pub fn features(self) -> &'static str {
        match self {
            Level::Scalar => "none",
            Level::Avx2 => "avx2 fma f16c",
            Level::Avx512 => "avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512_vnni",
        }
    }

    /// Whether this CPU (and this build's target) can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => crate::x86::avx2::available(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => crate::x86::avx512::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx2 | Level::Avx512 => false,
        }
    }

    /// The levels this CPU can run, slowest first.
    pub fn supported() -> Vec<Level> {
        Level::ALL
            .into_iter()
            .filter(|l| l.is_supported())
            .collect()
    }

    /// The fastest level this CPU can run.
    pub fn best() -> Level {
        Level::ALL
            .into_iter()
            .rev()
            .find(|l| l.is_supported())
            .unwrap_or(Level::Scalar)
    }

    /// The names of every level, for error messages: `scalar, avx2, avx512`.
    pub fn valid_names() -> String {
        Level::ALL.map(Level::name).join(", ")
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Level {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| KernelError::UnknownLevel {
                name: s.to_string(),
                valid: Level::valid_names(),
            })
    }
}

/// The active level's table, set at most once.
static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();

/// Makes `level` the process's level, or says why it cannot be: this CPU lacks
/// it, or another level is already in use (picked by an earlier [`select`] or
/// by a kernel call). Selecting the level already in use is fine.
pub fn select(level: Level) -> Result<Level, KernelError> {
    let kernels = Kernels::for_level(level)?;
    let active = ACTIVE.get_or_init(|| kernels);
    if active.level() == level {
        Ok(level)
    } else {
        Err(KernelError::LevelAlreadyChosen {
            requested: level,
            active: active.level(),
        })
    }
}

/// The level `TERSE_KERNELS` asks for (`None` when unset or empty).
pub fn level_from_env() -> Result<Option<Level>, KernelError> {
    match std::env::var(LEVEL_ENV) {
        Ok(value) if !value.trim().is_empty() => value.parse().map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(KernelError::UnknownLevel {
            name: value.to_string_lossy().into_owned(),
            valid: Level::valid_names(),
        }),
    }
}

/// [`select`]s the level `TERSE_KERNELS` names, or [`Level::best`] when it is
/// unset.
pub fn select_from_env() -> Result<Level, KernelError> {
    select(level_from_env()?.unwrap_or_else(Level::best))
}

/// The kernels of the active level (chosen on first use, see the module doc).
///
/// # Panics
/// On first use, if `TERSE_KERNELS` names no level or one this CPU lacks and
/// no level was selected before.
pub fn kernels() -> &'static Kernels {
    ACTIVE.get_or_init(|| {
        let level = level_from_env()
            .unwrap_or_else(|e| panic!("{LEVEL_ENV}: {e}"))
            .unwrap_or_else(Level::best);
        Kernels::for_level(level).unwrap_or_else(|e| panic!("{LEVEL_ENV}: {e}"))
    })
}

/// The active level (chosen on first use, see the module doc).
pub fn level() -> Level {
    kernels().level()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_levels_and_unknown_ones_list_the_valid() {
        for level in Level::ALL {
            assert_eq!(level.name().parse::<Level>().ok(), Some(level));
            assert_eq!(
                level.name().to_uppercase().parse::<Level>().ok(),
                Some(level)
            );
        }
        let err = "avx3".parse::<Level>().map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no kernel level is called \"avx3\"; the levels are scalar, avx2, avx512"
        );
    }

    #[test]
    fn the_best_level_is_supported_and_scalar_always_is() {
        assert!(Level::Scalar.is_supported());
        assert!(Level::best().is_supported());
        assert!(Level::supported().contains(&Level::best()));
        assert!(Level::supported().iter().all(|l| *l <= Level::best()));
    }

    #[test]
    fn a_level_the_cpu_lacks_is_an_error_naming_what_it_can_run() {
        match Level::ALL.into_iter().find(|l| !l.is_supported()) {
            Some(lacking) => {
                let err = Kernels::for_level(lacking).map(|_| ()).unwrap_err();
                let text = err.to_string();
                assert!(
                    text.contains(lacking.name()) && text.contains("scalar"),
                    "{text}"
                );
            }
            None => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "NOT TESTED: a_level_the_cpu_lacks_is_an_error…: this CPU runs every level"
                );
            }
        }
    }

    #[test]
    fn once_chosen_the_level_stays_and_another_is_refused() {
        let active = level();
        assert_eq!(select(active).ok(), Some(active));
        if let Some(other) = Level::supported().into_iter().find(|&l| l != active) {
            assert!(matches!(
                select(other),
                Err(KernelError::LevelAlreadyChosen { requested, active: a }) if requested == other && a == active
            ));
        }
        assert_eq!(level(), active);
    }
}
