//! [`Verdict`], what every experiment's claim comes to, and the helpers the claims share.
//!
//! Each experiment judges its own claim: its `judge` function is a pure function of its `Measured` figures (and
//! the cores, where the threshold scales with the machine), with its thresholds and its tests beside it in the
//! experiment's file. Keeping them pure lets those tests inject measurements, including failing ones, without
//! timing anything. This module knows no experiment.

use serde::Serialize;

/// Whether a claim held, and why (the figures it was judged on and the threshold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when the claim held.
    pub pass: bool,
    /// The figures and thresholds behind the verdict, in a sentence.
    pub reason: String,
}

impl Verdict {
    /// The claim held.
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            pass: true,
            reason: reason.into(),
        }
    }

    /// The claim did not hold.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            pass: false,
            reason: reason.into(),
        }
    }

    /// PASS or FAIL, as printed.
    pub fn label(&self) -> &'static str {
        if self.pass { "PASS" } else { "FAIL" }
    }

    /// `pass` when `holds`, else `fail`, with the same reason.
    pub(crate) fn check(holds: bool, reason: String) -> Self {
        Self {
            pass: holds,
            reason,
        }
    }

    /// Several sub-claims: passes when all pass; the reason lists every failure, or every check when all pass.
    pub(crate) fn all(checks: impl IntoIterator<Item = Verdict>) -> Self {
        let checks: Vec<Verdict> = checks.into_iter().collect();
        let failures: Vec<&str> = checks
            .iter()
            .filter(|check| !check.pass)
            .map(|check| check.reason.as_str())
            .collect();
        if failures.is_empty() {
            Self::pass(
                checks
                    .iter()
                    .map(|check| check.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        } else {
            Self::fail(failures.join("; "))
        }
    }
}

/// How late a timer may fire and still count as on time: 10 % of the bound plus 25 ms of scheduling on a busy
/// machine (a timer never fires early).
pub fn timer_tolerance(bound_ms: f64) -> f64 {
    bound_ms * 0.10 + 25.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_only_the_failures() {
        let verdict = Verdict::all([Verdict::pass("a held"), Verdict::fail("b broke")]);
        assert_eq!(verdict, Verdict::fail("b broke"));
        assert_eq!(
            Verdict::all([Verdict::pass("a"), Verdict::pass("b")]),
            Verdict::pass("a; b")
        );
    }
}
