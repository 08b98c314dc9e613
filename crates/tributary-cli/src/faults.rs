//! `SOURCE=KIND` fault flags, shared by `ask`, `batch` and `sources`.

use std::time::Duration;

use tributary_sim::Fault;

use crate::error::CliError;

/// One parsed `--fault` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultFlag {
    pub target: String,
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

/// Parses `SOURCE=KIND`.
pub fn parse_fault(text: &str) -> Result<FaultFlag, CliError> {
    let usage_hint = "write SOURCE=KIND, e.g. --fault news=hang or --fault weather=latency:2s; KIND is one of \
                      error, unavailable, hang, slow-body, malformed, huge, latency:DURATION";
    let Some((target, kind)) = text.split_once('=') else {
        return Err(
            CliError::argument(format!("invalid --fault `{text}`: missing `=`"))
                .with_hint(usage_hint),
        );
    };
    let target = target.trim();
    let kind = kind.trim();
    if target.is_empty() {
        return Err(
            CliError::argument(format!("invalid --fault `{text}`: no source named"))
                .with_hint(usage_hint),
        );
    }
    let fault = if let Some(duration) = kind.strip_prefix("latency:") {
        let latency = crate::cli::parse_duration(duration).map_err(|error| {
            CliError::argument(format!("invalid --fault `{text}`: {error}")).with_hint(usage_hint)
        })?;
        FaultKind::Latency(latency)
    } else if Fault::NAMES.contains(&kind) {
        FaultKind::Named(kind.to_owned())
    } else {
        return Err(CliError::argument(format!(
            "invalid --fault `{text}`: unknown fault kind `{kind}`"
        ))
        .with_hint(usage_hint));
    };
    Ok(FaultFlag {
        target: target.to_owned(),
        fault,
    })
}

/// Parses every flag, stopping at the first bad one.
pub fn parse_faults(flags: &[String]) -> Result<Vec<FaultFlag>, CliError> {
    flags.iter().map(|flag| parse_fault(flag)).collect()
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
}
