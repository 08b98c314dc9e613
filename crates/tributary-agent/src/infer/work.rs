//! The CPU cost of inference: an attention-like kernel, its calibration, and the budget it is given.
//!
//! One **work unit** is one candidate scored: a 32-dimensional integer dot product between the decoder state and
//! a hashed embedding of one vocabulary entry. A *pass* scores the whole vocabulary, and its best candidate is
//! mixed back into the state, so every unit influences every later one and the final checksum: the optimiser
//! cannot skip any of them. Integer (wrapping) arithmetic keeps the checksum byte-identical on every machine.
//!
//! A budget is given either as CPU time ([`InferenceCost::cpu`]), converted to units with a one-time
//! [`calibration`] of this machine, or as units directly ([`InferenceCost::units`]) for reproducible benchmarks.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How much CPU work one inference may spend.
///
/// Written as text (flags, config files) either as a duration of CPU time, `300ms` or `1.5s`, or as an exact
/// number of units, `250000 units`; see [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InferenceCost {
    /// About this much CPU time on one core of this machine, converted with [`calibration`].
    Cpu(Duration),
    /// Exactly this many work units, whatever the machine: the output (checksum included) is reproducible.
    Units(u64),
}

impl InferenceCost {
    /// The default budget: about 300 ms of CPU per response.
    pub const DEFAULT_CPU: Duration = Duration::from_millis(300);

    /// About `duration` of CPU time on one core.
    pub const fn cpu(duration: Duration) -> Self {
        Self::Cpu(duration)
    }

    /// Exactly `units` work units.
    pub const fn units(units: u64) -> Self {
        Self::Units(units)
    }

    /// No work at all: inference is nearly instant (useful in tests).
    pub const fn free() -> Self {
        Self::Units(0)
    }

    /// The number of work units this budget buys. The first call for a CPU budget runs the calibration.
    pub fn work_units(self) -> u64 {
        match self {
            Self::Units(units) => units,
            Self::Cpu(duration) => calibration().units_for(duration),
        }
    }
}

impl Default for InferenceCost {
    fn default() -> Self {
        Self::cpu(Self::DEFAULT_CPU)
    }
}

/// A cost that is neither a duration (`300ms`) nor a number of units (`250000 units`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "parse inference cost {text:?}: expected a CPU time such as `300ms` or a unit count such as `250000 units`"
)]
pub struct ParseCostError {
    text: String,
    #[source]
    duration_error: humantime::DurationError,
}

impl FromStr for InferenceCost {
    type Err = ParseCostError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if let Some(units) = trimmed
            .strip_suffix("units")
            .or_else(|| trimmed.strip_suffix("unit"))
            && let Ok(units) = units.trim().parse()
        {
            return Ok(Self::Units(units));
        }
        humantime::parse_duration(trimmed)
            .map(Self::Cpu)
            .map_err(|duration_error| ParseCostError {
                text: text.to_owned(),
                duration_error,
            })
    }
}

impl fmt::Display for InferenceCost {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu(duration) => write!(formatter, "{}", humantime::format_duration(*duration)),
            Self::Units(units) => write!(formatter, "{units} units"),
        }
    }
}

impl TryFrom<String> for InferenceCost {
    type Error = ParseCostError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<InferenceCost> for String {
    fn from(cost: InferenceCost) -> Self {
        cost.to_string()
    }
}

/// How fast this machine runs the inference kernel on one core, measured once per process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Work units per millisecond of CPU on one core.
    pub units_per_ms: f64,
    /// Wall-clock time the measurement took.
    pub measured_for: Duration,
}

impl Calibration {
    /// The number of units that take about `duration` on one core.
    pub fn units_for(&self, duration: Duration) -> u64 {
        // Saturating float-to-int conversion; non-negative by construction.
        (duration.as_secs_f64() * 1000.0 * self.units_per_ms).round() as u64
    }
}

/// The calibration of this machine, measured on first use (about 40 ms of one core) and cached for the process.
///
/// The measurement runs several short rounds and keeps the fastest: on a busy machine a round can be slowed
/// down by other threads but never sped up, so the fastest round is the best estimate of one free core.
/// It is CPU work: call it once at startup from a blocking context (or let the first inference on a pool
/// worker pay for it), never on an async runtime thread. Concurrent first callers wait for one measurement.
pub fn calibration() -> Calibration {
    *CALIBRATION.get_or_init(measure)
}

/// The calibration if it has already been measured in this process, without measuring it.
pub(crate) fn calibration_if_done() -> Option<Calibration> {
    CALIBRATION.get().copied()
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// Units between two checks of `should_stop`: a few tens of microseconds of work, so cancellation is prompt
/// while the check itself stays negligible.
pub(crate) const UNITS_BETWEEN_STOP_CHECKS: u64 = 2048;

pub(crate) const EMBEDDING_DIMENSIONS: usize = 32;
const CALIBRATION_ROUNDS: u32 = 8;
const CALIBRATION_ROUND: Duration = Duration::from_millis(5);

fn measure() -> Calibration {
    let started = Instant::now();
    let vocabulary: Vec<String> = (0..256)
        .map(|index| format!("calibration-{index}"))
        .collect();
    let embeddings = Embeddings::new(vocabulary.iter().map(String::as_str));
    let mut decoder = Decoder::new(0x5eed);
    let mut units_per_round: u64 = 4096;
    let mut best_units_per_ms: f64 = 0.0;
    for _ in 0..CALIBRATION_ROUNDS {
        let round_started = Instant::now();
        decoder.run(&embeddings, units_per_round);
        let elapsed_ms = round_started.elapsed().as_secs_f64() * 1000.0;
        if elapsed_ms > 0.0 {
            best_units_per_ms = best_units_per_ms.max(units_per_round as f64 / elapsed_ms);
        }
        // Size the next round to take about CALIBRATION_ROUND at the best rate seen so far.
        let target_ms = CALIBRATION_ROUND.as_secs_f64() * 1000.0;
        units_per_round = ((best_units_per_ms * target_ms) as u64).max(4096);
    }
    // Keep the checksum observable so the measured loop cannot be optimised away.
    std::hint::black_box(decoder.checksum());
    Calibration {
        units_per_ms: best_units_per_ms.max(1.0),
        measured_for: started.elapsed(),
    }
}

/// Hashed embeddings of a vocabulary: each word maps to a fixed pseudo-random vector derived from its bytes.
#[derive(Debug)]
pub(crate) struct Embeddings {
    rows: Vec<[i32; EMBEDDING_DIMENSIONS]>,
}

impl Embeddings {
    pub(crate) fn new<'a>(vocabulary: impl IntoIterator<Item = &'a str>) -> Self {
        let mut rows: Vec<_> = vocabulary.into_iter().map(embed).collect();
        if rows.is_empty() {
            // An empty document still has a cost: score a single placeholder so the budget is spent the same way.
            rows.push(embed(""));
        }
        Self { rows }
    }
}

/// The simulated decoder: a state vector that repeatedly attends over the vocabulary.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: [i32; EMBEDDING_DIMENSIONS],
    checksum: u64,
    /// Position inside the current pass over the vocabulary.
    cursor: usize,
    best_score: i64,
    best_index: usize,
    passes: u64,
}

impl Decoder {
    pub(crate) fn new(seed: u64) -> Self {
        let mut state = [0; EMBEDDING_DIMENSIONS];
        let mut random = SplitMix64(seed);
        for value in &mut state {
            *value = random.small_i32();
        }
        Self {
            state,
            checksum: seed,
            cursor: 0,
            best_score: i64::MIN,
            best_index: 0,
            passes: 0,
        }
    }

    /// Condition the state on a context token (the token just generated).
    pub(crate) fn attend_to(&mut self, context: &[i32; EMBEDDING_DIMENSIONS]) {
        for (value, context_value) in self.state.iter_mut().zip(context) {
            *value = value.wrapping_add(*context_value).rotate_left(3);
        }
    }

    /// Score exactly `units` candidates, continuing the current pass where the last call stopped.
    pub(crate) fn run(&mut self, embeddings: &Embeddings, units: u64) {
        for _ in 0..units {
            let row = &embeddings.rows[self.cursor];
            let score = dot(&self.state, row);
            if score > self.best_score {
                self.best_score = score;
                self.best_index = self.cursor;
            }
            self.cursor += 1;
            if self.cursor == embeddings.rows.len() {
                self.finish_pass(embeddings);
            }
        }
    }

    pub(crate) fn checksum(&self) -> u64 {
        self.checksum
    }

    pub(crate) fn passes(&self) -> u64 {
        self.passes
    }

    /// Mix the pass winner back into the state, so the next pass depends on every score of this one.
    fn finish_pass(&mut self, embeddings: &Embeddings) {
        let winner = &embeddings.rows[self.best_index];
        for (value, winner_value) in self.state.iter_mut().zip(winner) {
            *value = (*value ^ winner_value.rotate_left(7)).wrapping_mul(0x2c1b_3c6d) >> 8;
        }
        self.checksum = (self.checksum.rotate_left(9) ^ self.best_score as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ self.best_index as u64;
        self.passes += 1;
        self.cursor = 0;
        self.best_score = i64::MIN;
        self.best_index = 0;
    }
}

fn dot(left: &[i32; EMBEDDING_DIMENSIONS], right: &[i32; EMBEDDING_DIMENSIONS]) -> i64 {
    left.iter().zip(right).fold(0i64, |sum, (a, b)| {
        sum.wrapping_add(i64::from(*a) * i64::from(*b))
    })
}

/// The hashed embedding of one word.
pub(crate) fn embed(word: &str) -> [i32; EMBEDDING_DIMENSIONS] {
    let mut random = SplitMix64(fnv1a(word.as_bytes()));
    let mut row = [0; EMBEDDING_DIMENSIONS];
    for value in &mut row {
        *value = random.small_i32();
    }
    row
}

/// FNV-1a: a tiny, stable hash (unlike `std`'s `DefaultHasher`, whose output may change between releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: a stable pseudo-random sequence, defined here so the output can never change with a dependency.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A value in -2^15..2^15: small enough that a 32-term dot product never overflows.
    fn small_i32(&mut self) -> i32 {
        (self.next() >> 48) as i32 - (1 << 15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_units_give_the_same_checksum_and_more_units_a_different_one() {
        let embeddings = Embeddings::new(["rain", "sun", "wind"]);
        let run = |units| {
            let mut decoder = Decoder::new(7);
            decoder.run(&embeddings, units);
            (decoder.checksum(), decoder.passes())
        };
        assert_eq!(run(3000), run(3000));
        assert_ne!(run(3000).0, run(6000).0);
        assert_eq!(run(3000).1, 1000);
    }

    #[test]
    fn cost_reads_and_writes_as_text() {
        let parse = |text: &str| text.parse::<InferenceCost>();
        assert_eq!(
            parse("300ms"),
            Ok(InferenceCost::cpu(Duration::from_millis(300)))
        );
        assert_eq!(
            parse(" 1.5s "),
            Ok(InferenceCost::cpu(Duration::from_millis(1500)))
        );
        assert_eq!(parse("250000 units"), Ok(InferenceCost::units(250_000)));
        assert_eq!(parse("1unit"), Ok(InferenceCost::units(1)));
        let error = parse("fast").expect_err("not a cost");
        assert!(
            error
                .to_string()
                .starts_with("parse inference cost \"fast\"")
        );
        assert_eq!(
            InferenceCost::cpu(Duration::from_millis(300)).to_string(),
            "300ms"
        );
        assert_eq!(InferenceCost::units(7).to_string(), "7 units");
        let json = serde_json::to_string(&InferenceCost::default()).expect("serialise");
        assert_eq!(json, "\"300ms\"");
        assert_eq!(
            serde_json::from_str::<InferenceCost>(&json).ok(),
            Some(InferenceCost::default())
        );
    }

    #[test]
    fn cost_converts_through_calibration() {
        assert_eq!(InferenceCost::units(42).work_units(), 42);
        assert_eq!(InferenceCost::free().work_units(), 0);
        let calibration = calibration();
        assert!(calibration.units_per_ms >= 1.0);
        let hundred_ms = InferenceCost::cpu(Duration::from_millis(100)).work_units();
        let two_hundred_ms = InferenceCost::cpu(Duration::from_millis(200)).work_units();
        assert!(two_hundred_ms.abs_diff(2 * hundred_ms) <= 1);
    }
}
