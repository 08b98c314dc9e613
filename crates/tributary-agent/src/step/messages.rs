//! How failures read to people: an error with its causes on one line, and which bound cut a call short.

use tributary::group::Elapsed;

/// An error and its causes, `: `-separated, as one line. A cause whose text its parent already ends with is
/// not repeated: some errors print their source themselves (async-nats's "IO error: Connection refused" has the
/// I/O error as its source too), and the line once read "...: Connection refused: Connection refused".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

pub(super) fn inference_cut_short(elapsed: Elapsed) -> String {
    format!("inference cut short: {}", elapsed_message(elapsed))
}

/// Which bound cut a call short, in words: "per-source timeout of 5s exceeded" or "overall deadline exceeded".
pub fn elapsed_message(elapsed: Elapsed) -> String {
    match elapsed {
        Elapsed::PerCallTimeout(timeout) => {
            format!(
                "per-source timeout of {} exceeded",
                humantime::format_duration(timeout)
            )
        }
        Elapsed::DeadlineExceeded => "overall deadline exceeded".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tributary::group::ElapsedKind;

    use super::*;

    /// An error that prints its source itself, as async-nats's connect error does.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "IO error: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_its_parent_already_printed_is_not_repeated() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = refused.to_string();
        let chain = error_chain(&Repeats(refused));
        assert_eq!(chain, format!("IO error: {text}"));
        let chain = error_chain(&std::io::Error::other(Repeats(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))));
        assert_eq!(chain.matches("timed out").count(), 1, "{chain}");
    }

    #[test]
    fn elapsed_messages_tell_the_bounds_apart() {
        assert_eq!(
            elapsed_message(Elapsed::PerCallTimeout(Duration::from_secs(5))),
            "per-source timeout of 5s exceeded"
        );
        assert_eq!(
            elapsed_message(Elapsed::from(ElapsedKind::Deadline)),
            "overall deadline exceeded"
        );
    }
}
