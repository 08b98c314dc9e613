//! `SOURCE=KIND`: how a driver asks the simulated services for a fault (the `--fault` flags of `ask`, `batch`
//! and `sources`, the `faults` of a `serve` request), and the query parameters that carry it (`fault=`,
//! `latency_ms=`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tributary::name::check_name;

use crate::{Fault, MAX_LATENCY_OVERRIDE};

/// A fault flag that cannot be used: what is wrong, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultFlagError {
    /// What is wrong, naming the flag as given.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub hint: Option<String>,
}

impl FaultFlagError {
    fn new(message: String) -> Self {
        Self {
            message,
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for FaultFlagError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for FaultFlagError {}

/// Extra query parameters per source name: what the simulated services read a fault from.
pub type FaultQueries = Vec<(String, Vec<(String, String)>)>;

/// One parsed `--fault` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultFlag {
    /// The source (or, for `tributary sources`, the service) it names.
    pub target: String,
    /// What to inject.
    pub fault: FaultKind,
}

/// What to inject: one of the simulator's fault kinds, or extra latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// A simulator fault by its kebab-case name (`hang`, `error`, ...).
    Named(String),
    /// Extra latency before the answer.
    Latency(Duration),
}

impl FaultKind {
    /// The query parameter the simulated services read this fault from: `fault=NAME` or `latency_ms=N`.
    pub fn query_pair(&self) -> (String, String) {
        match self {
            Self::Named(name) => ("fault".to_owned(), name.clone()),
            Self::Latency(latency) => ("latency_ms".to_owned(), latency.as_millis().to_string()),
        }
    }
}

/// Parses `SOURCE=KIND`.
pub fn parse_fault(text: &str) -> Result<FaultFlag, FaultFlagError> {
    let usage_hint = "write SOURCE=KIND, e.g. --fault news=hang or --fault weather=latency:2s; KIND is one of \
                      error, unavailable, hang, slow-body, malformed, huge, latency:DURATION";
    let Some((target, kind)) = text.split_once('=') else {
        return Err(
            FaultFlagError::new(format!("invalid --fault `{text}`: missing `=`"))
                .with_hint(usage_hint),
        );
    };
    let target = target.trim();
    let kind = kind.trim();
    if target.is_empty() {
        return Err(
            FaultFlagError::new(format!("invalid --fault `{text}`: no source named"))
                .with_hint(usage_hint),
        );
    }
    // Before anything echoes the flag: a name that could rewrite the terminal is described, never printed.
    if let Err(error) = check_name(target) {
        return Err(
            FaultFlagError::new(format!("invalid --fault: the source name {error}"))
                .with_hint("a source's name has no control, bidi or invisible characters"),
        );
    }
    let fault = parse_fault_kind(kind).map_err(|error| {
        let hint = match error {
            FaultKindError::TooLong => "the simulated services refuse a longer latency",
            FaultKindError::Unknown(_) | FaultKindError::NotADuration { .. } => usage_hint,
        };
        FaultFlagError::new(format!("invalid --fault `{text}`: {error}")).with_hint(hint)
    })?;
    Ok(FaultFlag {
        target: target.to_owned(),
        fault,
    })
}

/// A fault kind that cannot be used, in words that do not name where it was written (a flag, a request's field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKindError {
    /// Not one of the simulator's faults, nor `latency:DURATION`.
    Unknown(String),
    /// `latency:` and something that is not a duration.
    NotADuration { duration: String, reason: String },
    /// A latency over [`MAX_LATENCY_OVERRIDE`].
    TooLong,
}

impl fmt::Display for FaultKindError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(kind) => write!(
                formatter,
                "unknown fault kind `{kind}`; the kinds are {}, latency:DURATION",
                Fault::NAMES.join(", ")
            ),
            Self::NotADuration { duration, reason } => {
                write!(formatter, "`{duration}` is not a duration ({reason})")
            }
            Self::TooLong => write!(
                formatter,
                "the latency must be at most {}",
                humantime::format_duration(MAX_LATENCY_OVERRIDE)
            ),
        }
    }
}

impl std::error::Error for FaultKindError {}

/// Parses a fault kind: one of the simulator's faults by name (`hang`), or `latency:DURATION`.
pub fn parse_fault_kind(kind: &str) -> Result<FaultKind, FaultKindError> {
    let kind = kind.trim();
    if let Some(duration) = kind.strip_prefix("latency:") {
        // Parsed without `cli::parse_duration`'s one-day bound: this one is tighter.
        let latency = humantime::parse_duration(duration.trim()).map_err(|error| {
            FaultKindError::NotADuration {
                duration: duration.to_owned(),
                reason: error.to_string(),
            }
        })?;
        if latency > MAX_LATENCY_OVERRIDE {
            return Err(FaultKindError::TooLong);
        }
        Ok(FaultKind::Latency(latency))
    } else if Fault::NAMES.contains(&kind) {
        Ok(FaultKind::Named(kind.to_owned()))
    } else {
        Err(FaultKindError::Unknown(kind.to_owned()))
    }
}

/// `current` with a request's faults (source name to fault kind, in the request's own terms: `serve`'s and the MCP
/// `ask` tool's `faults` object, the Python package's `faults=`) in place of the faults of the sources it names,
/// and only those. Every name must be one of `sources`; the error names the field (`faults: ...`,
/// `faults.news: ...`).
pub fn replace_faults(
    current: &FaultQueries,
    sources: &[&str],
    requested: &BTreeMap<String, String>,
) -> Result<FaultQueries, String> {
    let mut replacing: FaultQueries = Vec::new();
    for (source, kind) in requested {
        // A name that could rewrite a terminal is described, never echoed.
        check_name(source).map_err(|error| format!("faults: the source name {error}"))?;
        if !sources.contains(&source.as_str()) {
            return Err(format!(
                "faults: no source is called {source:?}; the sources are {}",
                sources.join(", ")
            ));
        }
        let fault = parse_fault_kind(kind).map_err(|error| format!("faults.{source}: {error}"))?;
        // One fault per source, so each source gets one query pair of its own.
        replacing.push((source.clone(), vec![fault.query_pair()]));
    }
    let mut faults = current.clone();
    faults.retain(|(source, _)| !replacing.iter().any(|(named, _)| named == source));
    faults.extend(replacing);
    Ok(faults)
}

/// Parses every flag, stopping at the first bad one. A source may have one named fault and one latency; a
/// second of either is refused rather than silently replacing the first.
pub fn parse_faults(flags: &[String]) -> Result<Vec<FaultFlag>, FaultFlagError> {
    let parsed: Vec<FaultFlag> = flags
        .iter()
        .map(|flag| parse_fault(flag))
        .collect::<Result<_, _>>()?;
    for (index, flag) in parsed.iter().enumerate() {
        let twice = parsed[..index].iter().position(|earlier| {
            earlier.target == flag.target
                && matches!(earlier.fault, FaultKind::Latency(_))
                    == matches!(flag.fault, FaultKind::Latency(_))
        });
        if let Some(earlier) = twice {
            let what = match flag.fault {
                FaultKind::Latency(_) => "latency",
                FaultKind::Named(_) => "fault",
            };
            return Err(FaultFlagError::new(format!(
                "--fault gives `{}` a {what} twice: `{}` and `{}`",
                flag.target, flags[earlier], flags[index]
            ))
            .with_hint("keep one; a source may have one fault and one latency"));
        }
    }
    Ok(parsed)
}

/// Fault flags for the sources named `sources`, as query parameters the simulated services understand (`fault=`, `latency_ms=`).
pub fn fault_queries(flags: &[String], sources: &[String]) -> Result<FaultQueries, FaultFlagError> {
    let mut queries: FaultQueries = Vec::new();
    for flag in parse_faults(flags)? {
        if !sources.contains(&flag.target) {
            return Err(FaultFlagError::new(format!(
                "--fault names an unknown source `{}`",
                flag.target
            ))
            .with_hint(format!("the sources are: {}", sources.join(", "))));
        }
        let pair = flag.fault.query_pair();
        match queries.iter_mut().find(|(name, _)| *name == flag.target) {
            Some((_, pairs)) => pairs.push(pair),
            None => queries.push((flag.target, vec![pair])),
        }
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_faults_and_latency_parse() {
        assert_eq!(
            parse_fault("news=hang").map_err(|e| e.message),
            Ok(FaultFlag {
                target: "news".into(),
                fault: FaultKind::Named("hang".into())
            })
        );
        assert_eq!(
            parse_fault("weather=latency:2s").map_err(|e| e.message),
            Ok(FaultFlag {
                target: "weather".into(),
                fault: FaultKind::Latency(Duration::from_secs(2))
            })
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        assert!(
            parse_fault("news")
                .unwrap_err()
                .message
                .contains("missing `=`")
        );
        assert!(
            parse_fault("news=explode")
                .unwrap_err()
                .message
                .contains("unknown fault kind `explode`")
        );
        assert!(
            parse_fault("=hang")
                .unwrap_err()
                .message
                .contains("no source named")
        );
        assert!(
            parse_fault("kb=latency:soon")
                .unwrap_err()
                .message
                .contains("not a duration")
        );
    }

    /// `--fault $'ne\u202Ews=hang'` was refused as an unknown source, with the name printed as it was.
    #[test]
    fn a_source_name_with_a_control_bidi_or_invisible_character_is_described_not_printed() {
        for (flag, expected) in [
            (
                "ne\nws=hang",
                "the source name contains U+000A (a control character) at character 3",
            ),
            (
                "\u{1b}[2Jkb=hang",
                "contains U+001B (a control character) at character 1",
            ),
            (
                "kb\u{202E}=error",
                "contains U+202E (a bidirectional-text control",
            ),
            (
                "k\u{200D}b=hang",
                "contains U+200D (an invisible character) at character 2",
            ),
        ] {
            let message = parse_fault(flag).unwrap_err().message;
            assert!(message.contains(expected), "{flag:?}: {message}");
            assert!(
                !message
                    .chars()
                    .any(|c| tributary::name::UnsafeCharacter::of(c).is_some()),
                "{flag:?}: {message:?}"
            );
        }
        assert!(parse_fault("my kb=hang").is_ok());
    }

    /// `--fault news=latency:1000000h` was accepted, and then every request failed with a bare 400.
    #[test]
    fn a_latency_past_the_simulators_bound_is_refused() {
        let message = parse_fault("news=latency:11m").unwrap_err().message;
        assert!(message.contains("must be at most 10m"), "{message}");
        assert!(parse_fault("news=latency:10m").is_ok());
    }

    /// A repeated `--fault` for the same source once kept the last silently.
    #[test]
    fn a_second_fault_or_latency_for_one_source_is_refused() {
        let flags =
            |flags: &[&str]| -> Vec<String> { flags.iter().map(|f| (*f).to_owned()).collect() };
        assert!(parse_faults(&flags(&["news=hang", "news=latency:2s", "kb=hang"])).is_ok());
        let message = parse_faults(&flags(&["news=hang", "kb=error", "news=error"]))
            .unwrap_err()
            .message;
        assert_eq!(
            message,
            "--fault gives `news` a fault twice: `news=hang` and `news=error`"
        );
        let message = parse_faults(&flags(&["kb=latency:1s", "kb=latency:2s"]))
            .unwrap_err()
            .message;
        assert!(message.contains("a latency twice"), "{message}");
    }
}
