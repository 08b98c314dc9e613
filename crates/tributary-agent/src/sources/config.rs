//! The sources file: which HTTP sources the agent asks, of which kind, and how patiently.
//!
//! A TOML file holds one `[[source]]` table per source:
//!
//! ```toml
//! [[source]]
//! name = "weather"            # unique; no control, bidi or invisible characters (`tributary::name`)
//! kind = "weather"            # weather | news | kb (simulated) | open-meteo | hn-algolia | wikipedia
//! base_url = "http://127.0.0.1:8080"  # http:// or https:// only
//! geocoding_url = "https://geocoding-api.open-meteo.com"  # open-meteo only; this is the default
//! rate_limit = "600/min"      # optional: at most N requests per s|min|h|day (or per DURATION: "10/5s")
//! user_agent = "my-tool/1.0 (+https://example.org/contact)"  # optional; default tributary/VERSION (+URL)
//! hedge = "p95"               # optional: "pNN" (1-99), a delay ("250ms"), or "off" (the default)
//! hedge_budget = "10%"        # hedges per 100 requests; default 10%
//! timeout = "2s"              # per attempt (humantime); default 2s, at most 1h
//! retries = 2                 # retries after the first attempt; default 2
//! cache_ttl = "60s"           # optional; absent or "0s" = no cache
//! required = false            # a required source failing fails the answer; default false
//! max_body_bytes = 1048576    # optional; default 1 MiB
//!
//! [source.breaker]            # optional; on by default with these values; `enabled = false` turns it off
//! window = "10s"              # how far back the failure rate looks
//! min_calls = 5               # the fewest calls in the window before the rate counts
//! failure_rate = "50%"        # at or above this the circuit opens
//! cool_down = "5s"            # open this long, then probes
//! probes = 2                  # probes that must succeed to close it again
//! ```
//!
//! Bounds ([`crate::limits`]): at most 10,000 sources; `timeout` at most an hour ([`MAX_TIMEOUT`]); `cache_ttl`
//! at most a day; `retries` at most 10; `max_body_bytes` at most 1 GiB.
//!
//! Unknown fields are rejected. Every error names the file, the line and column, and the field, because the
//! person reading it is about to open that file in an editor.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use tributary::name::check_name;
use tributary::source::{
    BreakerPolicy, DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRIES, DEFAULT_TIMEOUT, HedgeDelay,
    HedgePolicy, RateLimit, SourceSpec,
};
use url::Url;

use super::kind::{SourceKind, Topic};
use super::mcp::{McpServer, McpTool};
use crate::limits::{MAX_BODY_BYTES, MAX_DURATION, MAX_SOURCES};
use crate::protocols;

/// The per-attempt timeout of [`SourcesConfig::public`]'s sources.
pub const PUBLIC_TIMEOUT: Duration = Duration::from_secs(3);

/// More retries than this is a configuration mistake, not resilience.
pub const MAX_RETRIES: u32 = 10;

/// A per-attempt timeout longer than this is a configuration mistake, not patience. It also keeps every deadline
/// a fetch computes from the timeout within what the clock can represent.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// One source the agent asks: how to reach it (the engine's [`SourceSpec`]), what it knows about, and whether
/// the answer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where it is and how patiently to ask it.
    pub spec: SourceSpec,
    /// What it knows about: decides the request the planner makes and how its response is read.
    pub kind: SourceKind,
    /// Whether this source failing makes the whole answer fail rather than degrade.
    pub required: bool,
    /// `open-meteo` only: where its geocoding API is (`None`: the real one,
    /// [`OPEN_METEO_GEOCODING_URL`](crate::protocols::OPEN_METEO_GEOCODING_URL)); the forecast API is `spec.base_url`.
    pub geocoding_url: Option<Url>,
    /// `mcp` only: the server, the tool and its arguments.
    pub mcp: Option<McpTool>,
}

impl Source {
    /// An optional source of `kind` with the engine's default timeout, retries and size limit, the agent's
    /// default circuit breaker ([`BreakerPolicy::default`]), and no cache, rate limit or hedging.
    pub fn new(name: impl Into<String>, kind: SourceKind, base_url: Url) -> Self {
        let mut spec = SourceSpec::new(name, base_url);
        spec.breaker = Some(BreakerPolicy::default());
        Self {
            spec,
            kind,
            required: false,
            geocoding_url: None,
            mcp: None,
        }
    }

    /// The source's unique name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What it knows about: its kind's topic, or an `mcp` source's own.
    pub fn topic(&self) -> Topic {
        self.mcp
            .as_ref()
            .map_or(self.kind.topic(), |tool| tool.topic)
    }
}

/// All configured sources, in file order, with unique names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesConfig {
    /// The sources, in the order they were declared.
    pub sources: Vec<Source>,
}

impl SourcesConfig {
    /// The three sources of one server that speaks every kind's protocol at `base_url` (the simulated services
    /// do): `weather`, `news` and `kb`, with default timeouts and retries.
    ///
    /// Caching: weather 60 s, news 30 s, knowledge base 300 s (articles change least). None is required: the
    /// agent's promise is a degraded answer from whatever answered; `required = true` is opt-in through a file.
    pub fn all_kinds_at(base_url: &Url) -> Self {
        let source = |name: &str, kind, cache_ttl| {
            let mut source = Source::new(name, kind, base_url.clone());
            source.spec.cache_ttl = Some(Duration::from_secs(cache_ttl));
            source
        };
        Self {
            sources: vec![
                source("weather", SourceKind::Weather, 60),
                source("news", SourceKind::News, 30),
                source("kb", SourceKind::KnowledgeBase, 300),
            ],
        }
    }

    /// The three real, keyless public APIs at their real URLs: `weather` (Open-Meteo), `news` (Hacker News
    /// through Algolia) and `wikipedia` (Wikipedia's REST APIs), none required.
    ///
    /// Per-attempt timeout 3 s (a real network, two requests for weather and Wikipedia inside the per-source
    /// timeout), 2 retries. Caching, which also keeps the agent well inside each API's rate limit: weather 10
    /// minutes (Open-Meteo's current conditions change every 15 minutes), news 5 minutes, Wikipedia an hour.
    /// Rate limits, kept by the engine by waiting within the deadline (one limit per source; both of
    /// Open-Meteo's hosts share it): Open-Meteo 600 a minute, its free tier's per-minute limit (the tier also
    /// allows only 5,000 an hour and 10,000 a day, which one limit cannot also keep: a long batch must pace
    /// itself, or set `rate_limit = "10000/day"` in a sources file); HN Algolia 10,000 an hour, its documented
    /// limit per IP address; Wikipedia 10 a second, far under the 200 its REST APIs allow, to be gentle.
    pub fn public() -> Self {
        let source = |name: &str, kind, base_url: &str, cache_ttl, (requests, per)| {
            let mut source = Source::new(name, kind, Url::parse(base_url).expect("a valid URL"));
            source.spec.timeout = PUBLIC_TIMEOUT;
            source.spec.cache_ttl = Some(Duration::from_secs(cache_ttl));
            source.spec.rate_limit = Some(RateLimit {
                requests,
                per: Duration::from_secs(per),
            });
            source
        };
        let minute = 60;
        let hour = 60 * 60;
        Self {
            sources: vec![
                source(
                    "weather",
                    SourceKind::OpenMeteo,
                    protocols::OPEN_METEO_URL,
                    10 * minute,
                    (600, minute),
                ),
                source(
                    "news",
                    SourceKind::HnAlgolia,
                    protocols::HN_ALGOLIA_URL,
                    5 * minute,
                    (10_000, hour),
                ),
                source(
                    "wikipedia",
                    SourceKind::Wikipedia,
                    protocols::WIKIPEDIA_URL,
                    hour,
                    (10, 1),
                ),
            ],
        }
    }

    /// Reads and validates a sources file.
    ///
    /// This is blocking file I/O: call it before starting the runtime, or from the pool.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Self::from_str_named(&text, &path.display().to_string())
    }

    /// Parses and validates sources from `text`; `file_name` is only used in error messages.
    pub fn from_str_named(text: &str, file_name: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            ConfigError::invalid(
                file_name,
                text,
                offset,
                field_at(text, offset),
                error.message(),
            )
        })?;
        let invalid = |offset: usize, field: &str, message: String| {
            ConfigError::invalid(file_name, text, offset, Some(field.to_owned()), &message)
        };

        if raw.source.is_empty() {
            return Err(ConfigError::invalid(
                file_name,
                text,
                0,
                Some("source".to_owned()),
                "at least one [[source]] table is required",
            ));
        }
        if let Some(extra) = raw.source.get(MAX_SOURCES) {
            return Err(invalid(
                extra.name.span().start,
                "source",
                format!(
                    "at most {MAX_SOURCES} sources are allowed, this file has {}",
                    raw.source.len()
                ),
            ));
        }
        let mut sources: Vec<Source> = Vec::with_capacity(raw.source.len());
        let mut names = HashSet::with_capacity(raw.source.len());
        for entry in raw.source {
            let name = entry.name.get_ref().trim();
            if name.is_empty() {
                return Err(invalid(
                    entry.name.span().start,
                    "name",
                    "must not be empty".into(),
                ));
            }
            if let Err(error) = check_name(name) {
                return Err(invalid(
                    entry.name.span().start,
                    "name",
                    format!(
                        "{error}: a source's name is printed in terminals, on the page and in metrics labels"
                    ),
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(invalid(
                    entry.name.span().start,
                    "name",
                    format!("duplicate source name `{name}`"),
                ));
            }
            let url_error = |offset: usize, field: &str, message: String| {
                invalid(offset, field, format!("source `{name}`: {message}"))
            };
            let (base_url, mcp) = if entry.kind == SourceKind::Mcp {
                let tool = parse_mcp(&entry, name, &invalid)?;
                let base_url = match &tool.server {
                    McpServer::Url(url) => url.clone(),
                    McpServer::Command { argv, .. } => {
                        // A source's address for people (`sources`, the API): the program it starts.
                        let mut url = Url::parse("stdio:").expect("a valid URL");
                        url.set_path(&argv[0]);
                        url
                    }
                };
                (base_url, Some(tool))
            } else {
                if let Some((field, offset)) = mcp_fields(&entry).first().copied() {
                    return Err(invalid(
                        offset,
                        field,
                        format!(
                            "only an `mcp` source has `{field}`, this one is `{}`",
                            entry.kind
                        ),
                    ));
                }
                let Some(base_url) = &entry.base_url else {
                    return Err(invalid(
                        entry.name.span().start,
                        "base_url",
                        format!(
                            "source `{name}`: a `{}` source needs `base_url`",
                            entry.kind
                        ),
                    ));
                };
                let base_url = parse_http_url(base_url)
                    .map_err(|message| url_error(base_url.span().start, "base_url", message))?;
                (base_url, None)
            };
            let geocoding_url = match &entry.geocoding_url {
                None => None,
                Some(url) if entry.kind != SourceKind::OpenMeteo => {
                    return Err(invalid(
                        url.span().start,
                        "geocoding_url",
                        format!(
                            "only an `open-meteo` source geocodes, this one is `{}`",
                            entry.kind
                        ),
                    ));
                }
                Some(url) => Some(
                    parse_http_url(url)
                        .map_err(|message| url_error(url.span().start, "geocoding_url", message))?,
                ),
            };
            let timeout = match &entry.timeout {
                None => DEFAULT_TIMEOUT,
                Some(timeout) => parse_positive_duration(timeout, MAX_TIMEOUT)
                    .map_err(|message| invalid(timeout.span().start, "timeout", message))?,
            };
            let retries = match &entry.retries {
                None => DEFAULT_RETRIES,
                Some(retries) if *retries.get_ref() > MAX_RETRIES => {
                    return Err(invalid(
                        retries.span().start,
                        "retries",
                        format!("must be at most {MAX_RETRIES}"),
                    ));
                }
                Some(retries) => *retries.get_ref(),
            };
            let cache_ttl = match &entry.cache_ttl {
                None => None,
                Some(ttl) => match parse_duration(ttl, MAX_DURATION) {
                    Ok(Duration::ZERO) => None,
                    Ok(duration) => Some(duration),
                    Err(message) => return Err(invalid(ttl.span().start, "cache_ttl", message)),
                },
            };
            let max_body_bytes = match &entry.max_body_bytes {
                None => DEFAULT_MAX_BODY_BYTES,
                Some(limit) if *limit.get_ref() == 0 => {
                    return Err(invalid(
                        limit.span().start,
                        "max_body_bytes",
                        "must be greater than zero".into(),
                    ));
                }
                Some(limit) if *limit.get_ref() > MAX_BODY_BYTES => {
                    return Err(invalid(
                        limit.span().start,
                        "max_body_bytes",
                        format!("must be at most {MAX_BODY_BYTES} (1 GiB)"),
                    ));
                }
                Some(limit) => *limit.get_ref(),
            };
            let mut spec = SourceSpec::new(name, base_url);
            spec.timeout = timeout;
            spec.retries = retries;
            spec.cache_ttl = cache_ttl;
            spec.max_body_bytes = max_body_bytes;
            if let Some(limit) = &entry.rate_limit {
                spec.rate_limit = Some(
                    parse_rate_limit(limit.get_ref())
                        .map_err(|message| invalid(limit.span().start, "rate_limit", message))?,
                );
            }
            if let Some(agent) = &entry.user_agent {
                spec.user_agent = Some(
                    check_user_agent(agent.get_ref())
                        .map_err(|message| invalid(agent.span().start, "user_agent", message))?,
                );
            }
            spec.hedge = parse_hedge_fields(&entry, &invalid)?;
            spec.breaker = match &entry.breaker {
                None => Some(BreakerPolicy::default()),
                Some(raw) => parse_breaker(raw.get_ref(), &invalid)?,
            };
            sources.push(Source {
                spec,
                kind: entry.kind,
                required: entry.required,
                geocoding_url,
                mcp,
            });
        }
        Ok(Self { sources })
    }

    /// The source with this name, if any.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|source| source.name() == name)
    }
}

/// A sources file could not be read or is invalid. Messages read well after "failed to ".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read sources config {file}")]
    Read {
        /// The file, as given.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has a wrong or unknown field, or fails validation.
    #[error("load sources config {file}:{line}:{column}{}: {message}", field.as_ref().map(|field| format!(": field `{field}`")).unwrap_or_default())]
    Invalid {
        /// The file, as given.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// The field at fault, when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn invalid(
        file: &str,
        text: &str,
        offset: usize,
        field: Option<String>,
        message: &str,
    ) -> Self {
        let (line, column) = line_and_column(text, offset);
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            field,
            message: message.trim().to_owned(),
        }
    }
}

/// One `[[source]]` table as written, with spans for validation errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: SourceKind,
    base_url: Option<Spanned<String>>,
    /// `mcp`: the server's program and arguments (stdio), or
    command: Option<Spanned<Vec<String>>>,
    /// `mcp`: the server's address (streamable HTTP).
    url: Option<Spanned<String>>,
    /// `mcp` with `command`: variables added to its environment.
    env: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    /// `mcp` with `command`: its working directory.
    cwd: Option<Spanned<String>>,
    /// `mcp`: the tool to call.
    tool: Option<Spanned<String>>,
    /// `mcp`: its arguments, `{question}` and `{keywords}` filled in.
    arguments: Option<Spanned<toml::Table>>,
    /// `mcp`: what its answers are about.
    topic: Option<Spanned<Topic>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
    cache_ttl: Option<Spanned<String>>,
    #[serde(default)]
    required: bool,
    max_body_bytes: Option<Spanned<u64>>,
    geocoding_url: Option<Spanned<String>>,
    rate_limit: Option<Spanned<String>>,
    user_agent: Option<Spanned<String>>,
    hedge: Option<Spanned<String>>,
    hedge_budget: Option<Spanned<String>>,
    breaker: Option<Spanned<RawBreaker>>,
}

/// `[source.breaker]` as written; every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    enabled: Option<bool>,
    window: Option<Spanned<String>>,
    min_calls: Option<Spanned<u32>>,
    failure_rate: Option<Spanned<String>>,
    cool_down: Option<Spanned<String>>,
    probes: Option<Spanned<u32>>,
}

/// The fields only an `mcp` source has that `entry` gives, with where.
fn mcp_fields(entry: &RawSource) -> Vec<(&'static str, usize)> {
    [
        ("command", entry.command.as_ref().map(|it| it.span().start)),
        ("url", entry.url.as_ref().map(|it| it.span().start)),
        ("env", entry.env.as_ref().map(|it| it.span().start)),
        ("cwd", entry.cwd.as_ref().map(|it| it.span().start)),
        ("tool", entry.tool.as_ref().map(|it| it.span().start)),
        (
            "arguments",
            entry.arguments.as_ref().map(|it| it.span().start),
        ),
        ("topic", entry.topic.as_ref().map(|it| it.span().start)),
    ]
    .into_iter()
    .filter_map(|(field, offset)| Some((field, offset?)))
    .collect()
}

/// An `mcp` source's server, tool and arguments: `command` or `url` (one of them), `tool`, and the optional `env`
/// and `cwd` (with `command`), `arguments` and `topic`.
fn parse_mcp(
    entry: &RawSource,
    name: &str,
    invalid: &dyn Fn(usize, &str, String) -> ConfigError,
) -> Result<McpTool, ConfigError> {
    let at = entry.name.span().start;
    if let Some(base_url) = &entry.base_url {
        return Err(invalid(
            base_url.span().start,
            "base_url",
            "an `mcp` source is reached through `command` (a program spoken to over stdio) or `url` (its \
             streamable HTTP endpoint), not `base_url`"
                .to_owned(),
        ));
    }
    let server = match (&entry.command, &entry.url) {
        (Some(_), Some(url)) => {
            return Err(invalid(
                url.span().start,
                "url",
                format!("source `{name}`: give `command` or `url`, not both"),
            ));
        }
        (None, None) => {
            return Err(invalid(
                at,
                "command",
                format!(
                    "source `{name}`: an `mcp` source needs `command = [\"PROGRAM\", \"ARG\", ...]` or \
                     `url = \"http://HOST:PORT/mcp\"`"
                ),
            ));
        }
        (Some(command), None) => {
            let argv = command.get_ref().clone();
            if argv.first().is_none_or(|program| program.trim().is_empty()) {
                return Err(invalid(
                    command.span().start,
                    "command",
                    "must name a program first".to_owned(),
                ));
            }
            McpServer::Command {
                argv,
                env: entry
                    .env
                    .as_ref()
                    .map(|env| env.get_ref().clone().into_iter().collect())
                    .unwrap_or_default(),
                cwd: entry
                    .cwd
                    .as_ref()
                    .map(|cwd| std::path::PathBuf::from(cwd.get_ref())),
            }
        }
        (None, Some(url)) => {
            for (field, offset) in [
                ("env", entry.env.as_ref().map(|it| it.span().start)),
                ("cwd", entry.cwd.as_ref().map(|it| it.span().start)),
            ] {
                if let Some(offset) = offset {
                    return Err(invalid(
                        offset,
                        field,
                        format!("`{field}` is for a server started with `command`"),
                    ));
                }
            }
            McpServer::Url(parse_http_url(url).map_err(|message| {
                invalid(
                    url.span().start,
                    "url",
                    format!("source `{name}`: {message}"),
                )
            })?)
        }
    };
    let tool = match &entry.tool {
        Some(tool) if !tool.get_ref().trim().is_empty() => tool.get_ref().trim().to_owned(),
        Some(tool) => {
            return Err(invalid(
                tool.span().start,
                "tool",
                "must not be empty".to_owned(),
            ));
        }
        None => {
            return Err(invalid(
                at,
                "tool",
                format!(
                    "source `{name}`: an `mcp` source needs `tool`, the tool to call (`tributary sources --check` lists a server's tools)"
                ),
            ));
        }
    };
    let arguments = match &entry.arguments {
        None => McpTool::default_arguments(),
        Some(table) => match serde_json::to_value(table.get_ref()) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => {
                return Err(invalid(
                    table.span().start,
                    "arguments",
                    "must be a table of JSON values (TOML dates have no JSON form)".to_owned(),
                ));
            }
        },
    };
    Ok(McpTool {
        server,
        tool,
        arguments,
        topic: entry
            .topic
            .as_ref()
            .map_or(Topic::Knowledge, |topic| *topic.get_ref()),
    })
}

/// The most probes or minimum calls a breaker may ask for.
const MAX_BREAKER_CALLS: u32 = 10_000;

/// `hedge` and `hedge_budget`, validated.
fn parse_hedge_fields(
    entry: &RawSource,
    invalid: &dyn Fn(usize, &str, String) -> ConfigError,
) -> Result<Option<HedgePolicy>, ConfigError> {
    let mut hedge = match &entry.hedge {
        None => None,
        Some(hedge) => parse_hedge(hedge.get_ref())
            .map_err(|message| invalid(hedge.span().start, "hedge", message))?
            .map(HedgePolicy::new),
    };
    if let Some(budget) = &entry.hedge_budget {
        let percent = parse_percent(budget.get_ref(), 0)
            .map_err(|message| invalid(budget.span().start, "hedge_budget", message))?;
        match &mut hedge {
            Some(policy) => policy.budget_percent = percent,
            None => {
                return Err(invalid(
                    budget.span().start,
                    "hedge_budget",
                    "has no effect without `hedge` (e.g. hedge = \"p95\")".into(),
                ));
            }
        }
    }
    Ok(hedge)
}

/// The longest `user_agent` accepted.
const MAX_USER_AGENT_CHARS: usize = 256;

fn parse_breaker(
    raw: &RawBreaker,
    invalid: &dyn Fn(usize, &str, String) -> ConfigError,
) -> Result<Option<BreakerPolicy>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let mut policy = BreakerPolicy::default();
    let positive_duration = |value: &Spanned<String>, field: &str| {
        parse_positive_duration(value, MAX_DURATION)
            .map_err(|message| invalid(value.span().start, field, message))
    };
    let count = |value: &Spanned<u32>, field: &str| match *value.get_ref() {
        0 => Err(invalid(
            value.span().start,
            field,
            "must be at least 1".into(),
        )),
        count if count > MAX_BREAKER_CALLS => Err(invalid(
            value.span().start,
            field,
            format!("must be at most {MAX_BREAKER_CALLS}"),
        )),
        count => Ok(count),
    };
    if let Some(window) = &raw.window {
        policy.window = positive_duration(window, "breaker.window")?;
    }
    if let Some(cool_down) = &raw.cool_down {
        policy.cool_down = positive_duration(cool_down, "breaker.cool_down")?;
    }
    if let Some(min_calls) = &raw.min_calls {
        policy.min_calls = count(min_calls, "breaker.min_calls")?;
    }
    if let Some(probes) = &raw.probes {
        policy.probes = count(probes, "breaker.probes")?;
    }
    if let Some(rate) = &raw.failure_rate {
        policy.failure_percent = parse_percent(rate.get_ref(), 1)
            .map_err(|message| invalid(rate.span().start, "breaker.failure_rate", message))?;
    }
    Ok(Some(policy))
}

/// `"50%"` (or `"50"`) as a whole percentage from `minimum` to 100.
fn parse_percent(text: &str, minimum: u32) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<u32>() {
        Ok(percent) if (minimum..=100).contains(&percent) => Ok(percent),
        _ => Err(format!(
            "invalid percentage `{text}`: write a whole number from {minimum}% to 100%, e.g. \"10%\""
        )),
    }
}

/// `"p95"` → a percentile, `"250ms"` → a fixed delay, `"off"` → no hedging.
fn parse_hedge(text: &str) -> Result<Option<HedgeDelay>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if let Some(percentile) = text.strip_prefix(['p', 'P']) {
        return match percentile.parse::<u8>() {
            Ok(percentile @ 1..=99) => Ok(Some(HedgeDelay::Percentile(percentile))),
            _ => Err(format!(
                "invalid percentile `{text}`: write p1 to p99, e.g. \"p95\""
            )),
        };
    }
    match humantime::parse_duration(text) {
        Ok(Duration::ZERO) => Err("a hedge delay must be greater than zero".to_owned()),
        Ok(delay) if delay <= MAX_TIMEOUT => Ok(Some(HedgeDelay::Fixed(delay))),
        Ok(_) => Err(format!(
            "a hedge delay must be at most {}",
            humantime::format_duration(MAX_TIMEOUT)
        )),
        Err(_) => Err(format!(
            "invalid hedge `{text}`: write a percentile (\"p95\"), a delay (\"250ms\") or \"off\""
        )),
    }
}

/// A `rate_limit` field: `N/UNIT` (`600/min`, `10000/h`, `10/s`, `10000/day`) or `N/DURATION` (`10/5s`).
fn parse_rate_limit(value: &str) -> Result<RateLimit, String> {
    let hint = "write REQUESTS/PERIOD, e.g. \"600/min\" or \"10/5s\"";
    let Some((requests, period)) = value.split_once('/') else {
        return Err(format!("invalid rate limit `{value}`: {hint}"));
    };
    let requests: u32 = match requests.trim().parse() {
        Ok(0) | Err(_) => {
            return Err(format!(
                "invalid rate limit `{value}`: the number of requests must be a whole number from 1 ({hint})"
            ));
        }
        Ok(requests) => requests,
    };
    let per = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(60 * 60),
        "d" | "day" => Duration::from_secs(24 * 60 * 60),
        other => humantime::parse_duration(other)
            .map_err(|error| format!("invalid rate limit `{value}`: {error} ({hint})"))?,
    };
    if per.is_zero() || per > MAX_DURATION {
        return Err(format!(
            "invalid rate limit `{value}`: the period must be more than zero and at most {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(RateLimit { requests, per })
}

/// A `user_agent` field: what an HTTP header can carry (visible ASCII and spaces), not empty, not too long.
fn check_user_agent(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.chars().count() > MAX_USER_AGENT_CHARS {
        return Err(format!("must be at most {MAX_USER_AGENT_CHARS} characters"));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "must be visible ASCII (an HTTP header), not {bad:?}"
        ));
    }
    Ok(value.to_owned())
}

/// The schemes a URL field may have: what the engine's HTTP client speaks.
const URL_SCHEMES: [&str; 2] = ["http", "https"];

/// A URL field: http or https, with a host.
fn parse_http_url(value: &Spanned<String>) -> Result<Url, String> {
    let url = Url::parse(value.get_ref()).map_err(|error| format!("invalid url: {error}"))?;
    // The scheme first: the hints below keep the scheme, which is only right when it is one we speak
    // (`data:text/plain,hi` must not be told to write `data://HOST`).
    if !URL_SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "only http:// and https:// URLs are supported, not `{}:`: write http://HOST[:PORT]/PATH or \
             https://HOST[:PORT]/PATH",
            url.scheme()
        ));
    }
    // The url crate reads `http:///news` or `http:/news` as host `news`: a slip, not a host.
    let after_scheme = value
        .get_ref()
        .trim()
        .get(url.scheme().len()..)
        .unwrap_or_default();
    let Some(authority) = after_scheme.strip_prefix("://") else {
        return Err(format!("write {}://HOST[:PORT]/PATH", url.scheme()));
    };
    if authority.starts_with(['/', '\\']) {
        return Err(format!(
            "no host after `{}://`: write {}://HOST[:PORT]/PATH",
            url.scheme(),
            url.scheme()
        ));
    }
    Ok(url)
}

/// A duration field that must be more than zero, at most `limit`.
fn parse_positive_duration(value: &Spanned<String>, limit: Duration) -> Result<Duration, String> {
    match parse_duration(value, limit)? {
        Duration::ZERO => Err("must be greater than zero".to_owned()),
        duration => Ok(duration),
    }
}

/// A duration field, at most `limit`.
fn parse_duration(value: &Spanned<String>, limit: Duration) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value.get_ref()).map_err(|error| {
        format!(
            "invalid duration `{}`: {error} (try \"2s\" or \"500ms\")",
            value.get_ref()
        )
    })?;
    if duration > limit {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(limit)
        ));
    }
    Ok(duration)
}

/// 1-based line and column (in characters) of a byte offset of a file's text (a TOML span's start): where an
/// error in a sources file, or in the binary's config file, is.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The key of the `key = value` line containing `offset`: toml's error messages do not always name the field
/// (e.g. "invalid type: string, expected u32"), but its span points into that line.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(text, offset);
    let line_start = text[..offset].rfind('\n').map_or(0, |newline| newline + 1);
    let line_end = text[offset..]
        .find('\n')
        .map_or(text.len(), |newline| offset + newline);
    let (key, _) = text[line_start..line_end].split_once('=')?;
    let key = key.trim().trim_matches('"');
    let is_bare_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    is_bare_key.then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "sources.toml";

    const VALID: &str = r#"
[[source]]
name = "weather"
kind = "weather"
base_url = "http://127.0.0.1:8080"
timeout = "1500ms"
retries = 3
cache_ttl = "60s"
required = true
max_body_bytes = 4096

[[source]]
name = "kb"
kind = "kb"
base_url = "http://127.0.0.1:8082/api/"
"#;

    /// Parses `text`, expecting an error, and returns its line, field and message.
    fn invalid(text: &str) -> (usize, Option<String>, String) {
        let error = SourcesConfig::from_str_named(text, FILE).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(FILE), "{message}");
        match error {
            ConfigError::Invalid { line, field, .. } => (line, field, message),
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_file_is_parsed_with_defaults_filled_in() {
        let config = SourcesConfig::from_str_named(VALID, FILE).unwrap();

        let weather = config.get("weather").unwrap();
        assert_eq!(weather.kind, SourceKind::Weather);
        assert_eq!(weather.spec.base_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(weather.spec.timeout, Duration::from_millis(1500));
        assert_eq!(weather.spec.retries, 3);
        assert_eq!(weather.spec.cache_ttl, Some(Duration::from_secs(60)));
        assert!(weather.required);
        assert_eq!(weather.spec.max_body_bytes, 4096);

        let knowledge_base = config.get("kb").unwrap();
        let defaults = Source::new(
            "kb",
            SourceKind::KnowledgeBase,
            knowledge_base.spec.base_url.clone(),
        );
        assert_eq!(*knowledge_base, defaults);
        assert_eq!(
            config.sources.iter().map(Source::name).collect::<Vec<_>>(),
            ["weather", "kb"]
        );
    }

    #[test]
    fn a_zero_cache_ttl_means_no_cache() {
        let text = VALID.replace("cache_ttl = \"60s\"", "cache_ttl = \"0s\"");
        let config = SourcesConfig::from_str_named(&text, FILE).unwrap();
        assert_eq!(config.get("weather").unwrap().spec.cache_ttl, None);
    }

    #[test]
    fn an_unknown_field_is_rejected_with_its_line() {
        let text = VALID.replace("retries = 3", "retries = 3\nretry_budget = 9");
        let (line, field, message) = invalid(&text);
        assert_eq!(line, 8, "{message}");
        assert_eq!(field.as_deref(), Some("retry_budget"), "{message}");
        assert!(message.contains("retry_budget"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_rejected_with_its_line_and_field() {
        let text = VALID.replace("retries = 3", "retries = \"three\"");
        let (line, field, message) = invalid(&text);
        assert_eq!(line, 7, "{message}");
        assert_eq!(field.as_deref(), Some("retries"), "{message}");
    }

    #[test]
    fn an_unknown_kind_is_rejected_with_its_line() {
        let text = VALID.replace("kind = \"kb\"", "kind = \"encyclopedia\"");
        let (line, field, message) = invalid(&text);
        assert_eq!(line, 14, "{message}");
        assert_eq!(field.as_deref(), Some("kind"), "{message}");
    }

    #[test]
    fn a_bad_url_is_rejected_with_its_line_and_field() {
        let text = VALID.replace("http://127.0.0.1:8082/api/", "not a url");
        let (line, field, message) = invalid(&text);
        assert_eq!(line, 15, "{message}");
        assert_eq!(field.as_deref(), Some("base_url"), "{message}");
        assert!(message.contains("invalid url"), "{message}");
    }

    #[test]
    fn a_non_http_url_is_rejected() {
        let text = VALID.replace("http://127.0.0.1:8082/api/", "ftp://127.0.0.1/");
        let (line, field, message) = invalid(&text);
        assert_eq!(
            (line, field.as_deref()),
            (15, Some("base_url")),
            "{message}"
        );
    }

    /// `http:///news` was once accepted as host `news`.
    #[test]
    fn a_url_without_a_host_is_rejected() {
        for bad in [
            "http:///news",
            "http:/news",
            "https:news",
            "http://\\\\news",
        ] {
            let text = VALID.replace("http://127.0.0.1:8082/api/", bad);
            let (line, field, message) = invalid(&text);
            assert_eq!(
                (line, field.as_deref()),
                (15, Some("base_url")),
                "{bad}: {message}"
            );
        }
    }

    /// A file of 10,000 sources once answered seconds past the deadline at 800 MB: the count is capped.
    #[test]
    fn more_sources_than_the_cap_are_rejected_at_the_first_extra_one() {
        let entry = |index: usize| {
            format!(
                "[[source]]\nname = \"s{index}\"\nkind = \"news\"\nbase_url = \"http://127.0.0.1:1/\"\n"
            )
        };
        let at_cap: String = (0..MAX_SOURCES).map(entry).collect();
        let config =
            SourcesConfig::from_str_named(&at_cap, FILE).expect("the cap itself is allowed");
        assert_eq!(config.sources.len(), MAX_SOURCES);
        let over: String = (0..=MAX_SOURCES).map(entry).collect();
        let (line, field, message) = invalid(&over);
        assert_eq!(
            (line, field.as_deref()),
            (4 * MAX_SOURCES + 2, Some("source")),
            "{message}"
        );
        assert!(message.contains("at most 10000 sources"), "{message}");
    }

    /// `timeout = "18446744073709551615s"` once panicked on `Instant` overflow.
    #[test]
    fn durations_and_sizes_past_their_bounds_are_rejected() {
        for (from, to, field) in [
            ("\"1500ms\"", "\"18446744073709551615s\"", "timeout"),
            ("\"1500ms\"", "\"25h\"", "timeout"),
            ("\"60s\"", "\"1000years\"", "cache_ttl"),
            ("4096", "1073741825", "max_body_bytes"),
        ] {
            let text = VALID.replace(from, to);
            let (_, found, message) = invalid(&text);
            assert_eq!(found.as_deref(), Some(field), "{message}");
            assert!(message.contains("must be at most"), "{message}");
        }
    }

    #[test]
    fn a_duplicate_name_is_rejected_at_the_second_occurrence() {
        let text = VALID.replace("name = \"kb\"", "name = \"weather\"");
        let (line, field, message) = invalid(&text);
        assert_eq!(line, 13, "{message}");
        assert_eq!(field.as_deref(), Some("name"), "{message}");
        assert!(
            message.contains("duplicate source name `weather`"),
            "{message}"
        );
    }

    #[test]
    fn a_zero_or_unparsable_timeout_is_rejected() {
        for bad in ["\"0s\"", "\"soon\""] {
            let text = VALID.replace("\"1500ms\"", bad);
            let (line, field, message) = invalid(&text);
            assert_eq!((line, field.as_deref()), (6, Some("timeout")), "{message}");
        }
    }

    #[test]
    fn a_timeout_over_an_hour_is_rejected() {
        // Found by the `sources_file` fuzz target: a timeout past what the clock can represent was accepted, and
        // the first fetch panicked computing its deadline.
        for bad in ["\"300000000000y\"", "\"3601s\""] {
            let text = VALID.replace("\"1500ms\"", bad);
            let (line, field, message) = invalid(&text);
            assert_eq!((line, field.as_deref()), (6, Some("timeout")), "{message}");
            assert!(message.ends_with("must be at most 1h"), "{message}");
        }
        let text = VALID.replace("\"1500ms\"", "\"1h\"");
        let config = SourcesConfig::from_str_named(&text, FILE).unwrap();
        assert_eq!(config.get("weather").unwrap().spec.timeout, MAX_TIMEOUT);
    }

    #[test]
    fn too_many_retries_and_a_zero_size_limit_are_rejected() {
        let text = VALID.replace("retries = 3", "retries = 11");
        assert_eq!(invalid(&text).1.as_deref(), Some("retries"));
        let text = VALID.replace("max_body_bytes = 4096", "max_body_bytes = 0");
        let (line, field, _) = invalid(&text);
        assert_eq!((line, field.as_deref()), (10, Some("max_body_bytes")));
    }

    const RESILIENT: &str = r#"
[[source]]
name = "news"
kind = "news"
base_url = "http://127.0.0.1:8080"
rate_limit = "600/min"
hedge = "p95"
hedge_budget = "5%"
user_agent = "my-agent/1.0 (+https://example.org)"

[source.breaker]
window = "30s"
min_calls = 3
failure_rate = "60%"
cool_down = "2s"
probes = 1

[[source]]
name = "kb"
kind = "kb"
base_url = "http://127.0.0.1:8080"
hedge = "250ms"
breaker = { enabled = false }

[[source]]
name = "weather"
kind = "weather"
base_url = "http://127.0.0.1:8080"
"#;

    #[test]
    fn rate_limits_hedging_breakers_and_user_agents_are_read() {
        let config = SourcesConfig::from_str_named(RESILIENT, FILE).expect("valid");
        let news = &config.sources[0].spec;
        assert_eq!(
            news.rate_limit,
            Some(RateLimit {
                requests: 600,
                per: Duration::from_secs(60)
            })
        );
        let hedge = news.hedge.expect("hedged");
        assert_eq!(
            (hedge.delay, hedge.budget_percent),
            (HedgeDelay::Percentile(95), 5)
        );
        let breaker = news.breaker.expect("a breaker");
        assert_eq!(
            (
                breaker.window,
                breaker.min_calls,
                breaker.failure_percent,
                breaker.cool_down,
                breaker.probes
            ),
            (Duration::from_secs(30), 3, 60, Duration::from_secs(2), 1)
        );
        assert_eq!(
            news.user_agent.as_deref(),
            Some("my-agent/1.0 (+https://example.org)")
        );
        let kb = &config.sources[1].spec;
        assert_eq!(
            kb.hedge.map(|hedge| (hedge.delay, hedge.budget_percent)),
            Some((HedgeDelay::Fixed(Duration::from_millis(250)), 10))
        );
        assert_eq!(kb.breaker, None);
        let weather = &config.sources[2].spec;
        assert_eq!(
            weather.breaker,
            Some(BreakerPolicy::default()),
            "on by default"
        );
        assert_eq!(
            (weather.hedge, weather.rate_limit),
            (None, None),
            "off by default"
        );
    }

    #[test]
    fn bad_rate_limits_hedges_and_breakers_name_their_field() {
        let source = |extra: &str| {
            format!("[[source]]\nname = \"n\"\nkind = \"news\"\nbase_url = \"http://h\"\n{extra}\n")
        };
        for (extra, field, message) in [
            ("rate_limit = \"600\"", "rate_limit", "REQUESTS/PERIOD"),
            (
                "rate_limit = \"0/s\"",
                "rate_limit",
                "a whole number from 1",
            ),
            ("rate_limit = \"5/0s\"", "rate_limit", "more than zero"),
            ("hedge = \"p100\"", "hedge", "p1 to p99"),
            ("hedge = \"soon\"", "hedge", "a percentile"),
            ("hedge = \"0ms\"", "hedge", "greater than zero"),
            ("hedge_budget = \"10%\"", "hedge_budget", "without `hedge`"),
            (
                "hedge = \"p95\"\nhedge_budget = \"150%\"",
                "hedge_budget",
                "0% to 100%",
            ),
            ("user_agent = \"bad\\tline\"", "user_agent", "visible ASCII"),
            (
                "[source.breaker]\nfailure_rate = \"0%\"",
                "breaker.failure_rate",
                "1% to 100%",
            ),
            (
                "[source.breaker]\nprobes = 0",
                "breaker.probes",
                "at least 1",
            ),
            (
                "[source.breaker]\ncool_down = \"0s\"",
                "breaker.cool_down",
                "greater than zero",
            ),
        ] {
            let (_, found_field, found_message) = invalid(&source(extra));
            assert_eq!(
                found_field.as_deref(),
                Some(field),
                "{extra}: {found_message}"
            );
            assert!(found_message.contains(message), "{extra}: {found_message}");
        }
        let (_, _, message) = invalid(&source("[source.breaker]\nthreshold = 3"));
        assert!(message.contains("unknown field `threshold`"), "{message}");
    }

    /// `base_url = "data:text/plain,hi"` was told to "write data://HOST[:PORT]/PATH": a fix that keeps the
    /// scheme the client cannot speak.
    #[test]
    fn a_scheme_other_than_http_or_https_is_told_which_are_supported() {
        for bad in [
            "data:text/plain,hi",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
            "ws://127.0.0.1:8082/",
        ] {
            let text = VALID.replace("http://127.0.0.1:8082/api/", bad);
            let scheme = bad.split(':').next().unwrap_or_default();
            let (line, field, message) = invalid(&text);
            assert_eq!(
                (line, field.as_deref()),
                (15, Some("base_url")),
                "{bad}: {message}"
            );
            assert!(
                message.ends_with(&format!(
                    "field `base_url`: source `kb`: only http:// and https:// URLs are supported, not \
                     `{scheme}:`: write http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH"
                )),
                "{bad}: {message}"
            );
        }
        for good in ["HTTP://127.0.0.1:8082/", "https://example.org/api/"] {
            let text = VALID.replace("http://127.0.0.1:8082/api/", good);
            assert!(SourcesConfig::from_str_named(&text, FILE).is_ok(), "{good}");
        }
    }

    /// Names with a newline, an escape sequence or U+202E were accepted, and printed as they were in terminals,
    /// on the page, on the timeline and in metrics labels.
    #[test]
    fn a_name_with_a_control_bidi_or_invisible_character_is_rejected() {
        for (written, expected) in [
            (
                r"ne\nws",
                "contains U+000A (a control character) at character 3",
            ),
            (
                r"\u001b[31mnews",
                "contains U+001B (a control character) at character 1",
            ),
            (
                r"kb\u202Etxt",
                "contains U+202E (a bidirectional-text control",
            ),
            (
                r"k\u200Bb",
                "contains U+200B (an invisible character) at character 2",
            ),
            (
                r"k\u2028b",
                "contains U+2028 (a line or paragraph separator)",
            ),
        ] {
            let text = VALID.replace("name = \"kb\"", &format!("name = \"{written}\""));
            let (line, field, message) = invalid(&text);
            assert_eq!(
                (line, field.as_deref()),
                (13, Some("name")),
                "{written}: {message}"
            );
            assert!(message.contains(expected), "{written}: {message}");
        }
        // Still legal: spaces inside, other scripts, and white space trimmed from the ends.
        for good in ["my kb", "base de connaissances é", "知识库", r"  kb\n"] {
            let text = VALID.replace("name = \"kb\"", &format!("name = \"{good}\""));
            assert!(
                SourcesConfig::from_str_named(&text, FILE).is_ok(),
                "{good:?}"
            );
        }
    }

    #[test]
    fn a_missing_required_field_is_rejected() {
        let text = VALID.replace("base_url = \"http://127.0.0.1:8082/api/\"\n", "");
        let (_, _, message) = invalid(&text);
        assert!(message.contains("base_url"), "{message}");
    }

    #[test]
    fn a_file_without_sources_is_rejected() {
        let (_, field, _) = invalid("# nothing here\n");
        assert_eq!(field.as_deref(), Some("source"));
    }

    #[test]
    fn the_message_points_at_file_line_and_column() {
        let text = VALID.replace("http://127.0.0.1:8082/api/", "not a url");
        let message = SourcesConfig::from_str_named(&text, FILE)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "load sources config sources.toml:15:12: field `base_url`: source `kb`: invalid url"
            ),
            "{message}"
        );
    }

    #[test]
    fn from_path_reads_the_file_and_names_it_in_errors() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("sources.toml");
        std::fs::write(&path, VALID.replace("retries = 3", "retries = -1")).unwrap();

        let message = SourcesConfig::from_path(&path).unwrap_err().to_string();
        assert!(
            message.contains(&format!("{}:7:", path.display())),
            "{message}"
        );

        let missing = directory.path().join("missing.toml");
        let error = SourcesConfig::from_path(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert!(error.to_string().contains("missing.toml"));
    }

    const PUBLIC: &str = r#"
[[source]]
name = "weather"
kind = "open-meteo"
base_url = "http://127.0.0.1:9000/forecast"
geocoding_url = "http://127.0.0.1:9000/geocoding"

[[source]]
name = "news"
kind = "hn-algolia"
base_url = "https://hn.algolia.com"

[[source]]
name = "wikipedia"
kind = "wikipedia"
base_url = "https://en.wikipedia.org"
"#;

    #[test]
    fn the_public_kinds_are_read_with_an_optional_geocoding_url() {
        let config = SourcesConfig::from_str_named(PUBLIC, FILE).unwrap();
        let weather = config.get("weather").unwrap();
        assert_eq!(weather.kind, SourceKind::OpenMeteo);
        assert_eq!(
            weather.geocoding_url.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:9000/geocoding")
        );
        assert_eq!(config.get("news").unwrap().kind, SourceKind::HnAlgolia);
        let wikipedia = config.get("wikipedia").unwrap();
        assert_eq!(wikipedia.kind, SourceKind::Wikipedia);
        assert_eq!(wikipedia.geocoding_url, None);
    }

    #[test]
    fn a_geocoding_url_is_only_for_open_meteo_and_must_be_http() {
        let text = PUBLIC.replace(
            "base_url = \"https://hn.algolia.com\"",
            "base_url = \"https://hn.algolia.com\"\ngeocoding_url = \"https://example.com\"",
        );
        let (line, field, message) = invalid(&text);
        assert_eq!(
            (line, field.as_deref()),
            (12, Some("geocoding_url")),
            "{message}"
        );
        assert!(
            message.ends_with("only an `open-meteo` source geocodes, this one is `hn-algolia`"),
            "{message}"
        );
        for bad in ["ftp://127.0.0.1/", "http:///geocoding", "not a url"] {
            let text = PUBLIC.replace("http://127.0.0.1:9000/geocoding", bad);
            let (line, field, message) = invalid(&text);
            assert_eq!(
                (line, field.as_deref()),
                (6, Some("geocoding_url")),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn an_unknown_kind_names_every_kind() {
        let text = PUBLIC.replace("kind = \"wikipedia\"", "kind = \"wikipedai\"");
        let (line, field, message) = invalid(&text);
        assert_eq!((line, field.as_deref()), (15, Some("kind")), "{message}");
        for kind in SourceKind::ALL {
            assert!(message.contains(&format!("`{kind}`")), "{kind}: {message}");
        }
    }

    #[test]
    fn the_public_sources_are_the_three_apis_at_their_real_urls() {
        let config = SourcesConfig::public();
        let kinds: Vec<(&str, SourceKind, &str)> = config
            .sources
            .iter()
            .map(|source| (source.name(), source.kind, source.spec.base_url.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "weather",
                    SourceKind::OpenMeteo,
                    "https://api.open-meteo.com/"
                ),
                ("news", SourceKind::HnAlgolia, "https://hn.algolia.com/"),
                (
                    "wikipedia",
                    SourceKind::Wikipedia,
                    "https://en.wikipedia.org/"
                ),
            ]
        );
        assert!(config.sources.iter().all(|source| !source.required
            && source.spec.cache_ttl.is_some()
            && source.spec.rate_limit.is_some()
            && source.spec.timeout == PUBLIC_TIMEOUT));
    }

    #[test]
    fn a_rate_limit_and_a_user_agent_are_read_and_checked() {
        let with = |rate_limit: &str, user_agent: &str| {
            PUBLIC.replace(
                "base_url = \"https://hn.algolia.com\"",
                &format!(
                    "base_url = \"https://hn.algolia.com\"\nrate_limit = \"{rate_limit}\"\nuser_agent = \"{user_agent}\""
                ),
            )
        };
        for (written, requests, seconds) in [
            ("600/min", 600, 60),
            ("10000/h", 10_000, 3600),
            ("10 / s", 10, 1),
            ("10000/day", 10_000, 86_400),
            ("3/5s", 3, 5),
        ] {
            let config = SourcesConfig::from_str_named(
                &with(written, "probe/1 (+https://example.org)"),
                FILE,
            )
            .unwrap_or_else(|error| panic!("{written}: {error}"));
            let spec = &config.get("news").unwrap().spec;
            assert_eq!(
                spec.rate_limit,
                Some(RateLimit {
                    requests,
                    per: Duration::from_secs(seconds)
                }),
                "{written}"
            );
            assert_eq!(
                spec.user_agent.as_deref(),
                Some("probe/1 (+https://example.org)")
            );
        }
        for bad in [
            "600",
            "0/min",
            "-1/min",
            "many/min",
            "10/fortnight",
            "10/0s",
            "10/2days",
        ] {
            let (line, field, message) = invalid(&with(bad, "ok"));
            assert_eq!(
                (line, field.as_deref()),
                (12, Some("rate_limit")),
                "{bad}: {message}"
            );
        }
        for bad in ["", "caf\u{e9}/1", "tab\\there"] {
            let (line, field, message) = invalid(&with("1/s", bad));
            assert_eq!(
                (line, field.as_deref()),
                (13, Some("user_agent")),
                "{bad:?}: {message}"
            );
        }
    }

    #[test]
    fn one_server_of_every_kind_gives_three_optional_cached_sources() {
        let base = Url::parse("http://127.0.0.1:4321/api/").unwrap();
        let config = SourcesConfig::all_kinds_at(&base);
        let kinds: Vec<(&str, SourceKind, bool)> = config
            .sources
            .iter()
            .map(|source| (source.name(), source.kind, source.required))
            .collect();
        assert_eq!(
            kinds,
            [
                ("weather", SourceKind::Weather, false),
                ("news", SourceKind::News, false),
                ("kb", SourceKind::KnowledgeBase, false),
            ]
        );
        assert!(
            config
                .sources
                .iter()
                .all(|source| source.spec.base_url == base)
        );
        assert!(
            config
                .sources
                .iter()
                .all(|source| source.spec.cache_ttl.is_some())
        );
    }

    #[test]
    fn an_mcp_source_names_its_server_its_tool_and_its_arguments() {
        let text = r#"
[[source]]
name = "docs"
kind = "mcp"
command = ["python3", "server.py", "stdio"]
env = { LEVEL = "2" }
cwd = "/srv"
tool = "search"
arguments = { query = "{keywords}", limit = 3 }
topic = "news"
timeout = "4s"

[[source]]
name = "remote"
kind = "mcp"
url = "http://127.0.0.1:9000/mcp"
tool = "lookup"
"#;
        let config = SourcesConfig::from_str_named(text, FILE).expect("valid");
        let docs = config.get("docs").expect("docs");
        let tool = docs.mcp.as_ref().expect("an mcp tool");
        assert_eq!(
            tool.server,
            McpServer::Command {
                argv: vec!["python3".into(), "server.py".into(), "stdio".into()],
                env: vec![("LEVEL".into(), "2".into())],
                cwd: Some("/srv".into()),
            }
        );
        assert_eq!(tool.tool, "search");
        assert_eq!(
            serde_json::Value::Object(tool.arguments.clone()),
            serde_json::json!({"query": "{keywords}", "limit": 3})
        );
        assert_eq!(docs.topic(), Topic::News);
        assert_eq!(docs.spec.timeout, Duration::from_secs(4));
        assert_eq!(docs.spec.base_url.as_str(), "stdio:python3");
        let remote = config
            .get("remote")
            .expect("remote")
            .mcp
            .as_ref()
            .expect("a tool");
        assert_eq!(
            remote.server,
            McpServer::Url("http://127.0.0.1:9000/mcp".parse().unwrap())
        );
        assert_eq!(
            serde_json::Value::Object(remote.arguments.clone()),
            serde_json::json!({"question": "{question}"})
        );
        assert_eq!(config.get("remote").unwrap().topic(), Topic::Knowledge);
    }

    #[test]
    fn an_mcp_source_written_wrong_is_refused_with_where_and_why() {
        let cases = [
            ("kind = \"mcp\"\ntool = \"t\"", "command", "needs `command"),
            (
                "kind = \"mcp\"\ncommand = [\"a\"]\nurl = \"http://127.0.0.1:1/mcp\"\ntool = \"t\"",
                "url",
                "not both",
            ),
            (
                "kind = \"mcp\"\ncommand = []\ntool = \"t\"",
                "command",
                "must name a program",
            ),
            ("kind = \"mcp\"\ncommand = [\"a\"]", "tool", "needs `tool`"),
            (
                "kind = \"mcp\"\ncommand = [\"a\"]\ntool = \" \"",
                "tool",
                "must not be empty",
            ),
            (
                "kind = \"mcp\"\nbase_url = \"http://127.0.0.1:1\"\ntool = \"t\"",
                "base_url",
                "not `base_url`",
            ),
            (
                "kind = \"mcp\"\nurl = \"ftp://x/mcp\"\ntool = \"t\"",
                "url",
                "only http://",
            ),
            (
                "kind = \"mcp\"\nurl = \"http://127.0.0.1:1/mcp\"\ncwd = \"/\"\ntool = \"t\"",
                "cwd",
                "started with `command`",
            ),
            (
                "kind = \"kb\"\nbase_url = \"http://127.0.0.1:1\"\ntool = \"t\"",
                "tool",
                "only an `mcp` source has `tool`",
            ),
            ("kind = \"kb\"", "base_url", "needs `base_url`"),
        ];
        for (body, field, says) in cases {
            let text = format!("[[source]]\nname = \"s\"\n{body}\n");
            let (_, found, message) = invalid(&text);
            assert_eq!(found.as_deref(), Some(field), "{body}: {message}");
            assert!(message.contains(says), "{body}: {message}");
        }
    }
}
