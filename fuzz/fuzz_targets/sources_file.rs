//! The sources file parser: any text gives a valid configuration or an error that points into the file, never a
//! panic. A valid configuration is usable as it is (every duration fits a deadline) and survives a round trip:
//! written back as a sources file, it parses to the same configuration.
//!
//! Input: the file's bytes. `SourcesConfig::from_path` reads the file with `read_to_string`, so only UTF-8 text
//! ever reaches the parser; other inputs are skipped.

#![no_main]

use std::fmt::Write as _;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tributary::group::Deadline;
use tributary_agent::sources::{ConfigError, MAX_RETRIES, MAX_TIMEOUT, SourcesConfig};

const FILE_NAME: &str = "sources.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SourcesConfig::from_str_named(text, FILE_NAME) {
        Ok(config) => {
            check_valid(&config);
            check_round_trip(&config);
        }
        Err(error) => check_error(text, &error),
    }
});

/// What validation promises of a configuration it accepts.
fn check_valid(config: &SourcesConfig) {
    assert!(!config.sources.is_empty(), "a config without sources");
    for (position, source) in config.sources.iter().enumerate() {
        let spec = &source.spec;
        assert!(!source.name().is_empty(), "an empty name");
        assert_eq!(source.name(), source.name().trim(), "an untrimmed name");
        assert!(
            config.sources[..position]
                .iter()
                .all(|earlier| earlier.name() != source.name()),
            "duplicate name `{}`",
            source.name()
        );
        assert!(
            matches!(spec.base_url.scheme(), "http" | "https"),
            "scheme `{}`",
            spec.base_url.scheme()
        );
        assert!(
            !spec.timeout.is_zero() && spec.timeout <= MAX_TIMEOUT,
            "a timeout of {:?}",
            spec.timeout
        );
        assert!(spec.retries <= MAX_RETRIES, "{} retries", spec.retries);
        assert!(spec.max_body_bytes > 0, "a zero size limit");
        assert!(
            spec.cache_ttl.is_none_or(|ttl| !ttl.is_zero()),
            "a zero cache TTL that is not `None`"
        );
        // What every fetch does with the timeout: a deadline that far from now must exist.
        let _ = Deadline::none().narrow(Some(spec.timeout));
    }
}

/// Writes `config` back as a sources file, every field explicit, and parses it again.
fn check_round_trip(config: &SourcesConfig) {
    let mut text = String::new();
    for source in &config.sources {
        let spec = &source.spec;
        let quoted = |value: &str| toml::Value::String(value.to_owned()).to_string();
        let _ = writeln!(text, "[[source]]");
        let _ = writeln!(text, "name = {}", quoted(source.name()));
        let _ = writeln!(text, "kind = {}", quoted(source.kind.as_str()));
        let _ = writeln!(text, "base_url = {}", quoted(spec.base_url.as_str()));
        let _ = writeln!(text, "timeout = {}", quoted(&duration_text(spec.timeout)));
        let _ = writeln!(text, "retries = {}", spec.retries);
        if let Some(ttl) = spec.cache_ttl {
            let _ = writeln!(text, "cache_ttl = {}", quoted(&duration_text(ttl)));
        }
        let _ = writeln!(text, "required = {}", source.required);
        let _ = writeln!(text, "max_body_bytes = {}", spec.max_body_bytes);
    }
    match SourcesConfig::from_str_named(&text, FILE_NAME) {
        Ok(again) => assert_eq!(
            &again, config,
            "the round trip changed the configuration:\n{text}"
        ),
        Err(error) => panic!("the configuration written back does not parse: {error}\n{text}"),
    }
}

/// A duration as humantime reads it back exactly.
fn duration_text(duration: Duration) -> String {
    match duration.subsec_nanos() {
        0 => format!("{}s", duration.as_secs()),
        nanos => format!("{}s {nanos}ns", duration.as_secs()),
    }
}

/// An error names the file and a line and column inside it, and reads well after "failed to ".
fn check_error(text: &str, error: &ConfigError) {
    let ConfigError::Invalid {
        file,
        line,
        column,
        message,
        ..
    } = error
    else {
        panic!("parsing text gave a read error: {error}");
    };
    assert_eq!(file, FILE_NAME);
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(line),
        "line {line} of a {lines}-line file"
    );
    let line_chars = text
        .split('\n')
        .nth(line - 1)
        .map_or(0, |line| line.chars().count());
    assert!(
        (1..=line_chars + 1).contains(column),
        "column {column} of a {line_chars}-character line"
    );
    assert!(!message.is_empty(), "an empty message");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("load sources config {FILE_NAME}:{line}:{column}")),
        "{shown}"
    );
}
