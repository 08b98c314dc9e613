//! The config file of defaults: `config.toml` in the platform's config directory (`~/.config/tributary/` on
//! Linux), or the file `TRIBUTARY_CONFIG_FILE` names.
//!
//! A key is an option's long name, without the dashes, and its value is the option's default for every command
//! that has the option: `deadline = "5s"`, `workers = 4`, `model = ["a", "b"]`, `timeline = true`. A table
//! named after a command (`[serve]`) holds defaults for that command alone, and beats the top level. The
//! precedence is flag > variable > file > built-in: the file's values become the options' defaults in clap's
//! `Command` before it parses, so a variable (clap's `env`) and a flag still win, and `--help` shows them as
//! the defaults. Every value is checked here, by the option's own parser, so that a mistake is reported with the
//! file, line, column and key, not under the flag as if it had been typed.
//!
//! Why by hand: clap reads no files, and the crates that layer files under clap (twelf, clap-serde) need a
//! second description of every option as a serde struct, which would drift from the flags; here the options are
//! clap's own.

use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use tributary_agent::sources::line_and_column;

/// The variable that names the config file; empty means "no config file".
pub const VARIABLE: &str = "TRIBUTARY_CONFIG_FILE";

/// The commands that never read the file: their output must not depend on one user's defaults (the manual
/// page, the completion scripts), or they are spawned by tributary itself (a worker process).
const IGNORED_BY: [&str; 3] = ["man", "completions", "__worker"];

/// Where the config file is, and whether it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `TRIBUTARY_CONFIG_FILE` names it: it must exist.
    Named(PathBuf),
    /// The platform's default place; read when it exists.
    Default(PathBuf),
    /// `TRIBUTARY_CONFIG_FILE` is empty: no file is read.
    Disabled,
    /// No home or config directory is known: no file is read.
    Unknown,
}

/// A config file read and checked against the options.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from (`None`: no file).
    pub path: Option<PathBuf>,
    entries: Vec<Entry>,
}

/// One option's default from the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The command whose table it is in, or `None` at the top level.
    pub command: Option<String>,
    /// The option's long name.
    pub key: String,
    /// The values, as clap reads them from a command line.
    pub values: Vec<String>,
    /// The line of the value, counted from 1.
    pub line: usize,
}

/// A config file that cannot be used.
#[derive(Debug)]
pub struct ConfigFileError {
    pub path: PathBuf,
    /// Where, counted from 1 (`None`: the file as a whole).
    pub position: Option<(usize, usize)>,
    /// The key at fault, with its table (`serve.deadline`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", display(&self.path))?;
        if let Some((line, column)) = self.position {
            write!(f, ", line {line}, column {column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// Where the config file is: the variable's path, else the platform's config directory's.
pub fn locate() -> Location {
    match std::env::var_os(VARIABLE) {
        Some(value) if value.is_empty() => Location::Disabled,
        Some(value) => Location::Named(PathBuf::from(value)),
        None => dirs::config_dir().map_or(Location::Unknown, |dir| {
            Location::Default(dir.join("tributary").join("config.toml"))
        }),
    }
}

/// Whether the command line runs a command that ignores the file ([`IGNORED_BY`]); a command line that does not
/// parse reads it, so that a mistake in the file is reported.
pub fn is_ignored(command: &Command, args: &[OsString]) -> bool {
    command
        .clone()
        .try_get_matches_from(args)
        .ok()
        .and_then(|matches| matches.subcommand_name().map(str::to_owned))
        .is_some_and(|name| IGNORED_BY.contains(&name.as_str()))
}

/// Reads the file at `location` (nothing when there is none) and checks every key and value against `command`'s
/// options.
pub fn load(location: &Location, command: &Command) -> Result<ConfigFile, ConfigFileError> {
    let path = match location {
        Location::Named(path) => path,
        Location::Default(path) if path.exists() => path,
        Location::Default(_) | Location::Disabled | Location::Unknown => {
            return Ok(ConfigFile::default());
        }
    };
    let whole = |message: String| ConfigFileError {
        path: path.clone(),
        position: None,
        key: None,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        whole(match location {
            Location::Named(_) if error.kind() == std::io::ErrorKind::NotFound => {
                format!("cannot be read ({error}); {VARIABLE} names it: correct it, or set it empty for none")
            }
            _ => format!("cannot be read ({error})"),
        })
    })?;
    let entries = parse(&text, command).map_err(|(span, key, message)| ConfigFileError {
        path: path.clone(),
        position: span.map(|span| line_and_column(&text, span.start)),
        key,
        message,
    })?;
    Ok(ConfigFile {
        path: Some(path.clone()),
        entries,
    })
}

impl ConfigFile {
    /// The entry that sets `key` for `command`: its table's, else the top level's.
    pub fn entry(&self, command: &str, key: &str) -> Option<&Entry> {
        let find = |table: Option<&str>| {
            self.entries
                .iter()
                .find(|entry| entry.command.as_deref() == table && entry.key == key)
        };
        find(Some(command)).or_else(|| find(None))
    }

    /// `command` with the file's values as its options' defaults.
    pub fn apply(&self, command: Command) -> Command {
        if self.entries.is_empty() {
            return command;
        }
        let mut command = self.apply_to("", command);
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        for name in names {
            command = command.mut_subcommand(&name, |sub| self.apply_to(&name, sub));
        }
        command
    }

    /// `command`'s own options (not its subcommands') with the file's values for `name` as their defaults.
    fn apply_to(&self, name: &str, mut command: Command) -> Command {
        let settable: Vec<(String, &Entry)> = command
            .get_arguments()
            .filter_map(|arg| {
                let entry = self.entry(name, arg.get_long()?)?;
                Some((arg.get_id().to_string(), entry))
            })
            .collect();
        if settable.is_empty() {
            return command;
        }
        // `--help` shows the file's values as the defaults; this says where they came from.
        let mut note = format!(
            "Defaults from the config file {}:",
            self.path.as_deref().map(display).unwrap_or_default()
        );
        for (_, entry) in &settable {
            note.push_str(&format!(" --{} {},", entry.key, entry.values.join(",")));
        }
        note.pop();
        note.push_str(&format!(
            " (`tributary config {name}` shows where each default comes from)"
        ));
        for (id, entry) in settable {
            // clap's required check ignores defaults: a required option the file gives is no longer required.
            command = command.mut_arg(id, |arg| {
                arg.required(false).default_values(entry.values.clone())
            });
        }
        if name.is_empty() {
            // The global options: each command's own help shows them, with their file value.
            return command;
        }
        let after = command
            .get_after_help()
            .map_or_else(String::new, |after| format!("\n\n{after}"));
        command.after_help(format!("{note}{after}"))
    }
}

/// What went wrong in the text: where (a byte range), the key, and the message.
type ParseError = (Option<Range<usize>>, Option<String>, String);

/// The entries of `text`, each checked against the option it names.
fn parse(text: &str, command: &Command) -> Result<Vec<Entry>, ParseError> {
    let document = toml::de::DeTable::parse(text).map_err(|error| {
        (
            error.span(),
            None,
            format!("not valid TOML: {}", error.message()),
        )
    })?;
    let mut top = Vec::new();
    let mut tables = Vec::new();
    for (key, value) in document.get_ref() {
        let name: &str = key.get_ref();
        if let toml::de::DeValue::Table(table) = value.get_ref() {
            let Some(sub) = command
                .get_subcommands()
                .find(|sub| sub.get_name() == name && !sub.is_hide_set())
            else {
                return Err((
                    Some(key.span()),
                    Some(name.to_owned()),
                    format!(
                        "no command is called `{name}`; a table holds one command's defaults: {}",
                        settable_commands(command).join(", ")
                    ),
                ));
            };
            for (option, value) in table {
                let long = option.get_ref();
                let refuse = |message: String| {
                    (Some(option.span()), Some(format!("{name}.{long}")), message)
                };
                // A global option is copied into each command only when clap builds it: a table's value for
                // one would never apply.
                if settable(command.get_arguments(), long).is_some() {
                    return Err(refuse(format!(
                        "--{long} is a global option: set it at the top level, for every command"
                    )));
                }
                let arg = settable(sub.get_arguments(), long).ok_or_else(|| {
                    refuse(format!(
                        "`tributary {name}` has no option --{long}; `tributary {name} --help` lists them"
                    ))
                })?;
                if let Some(why) = refusal(sub, arg) {
                    return Err(refuse(why));
                }
                tables.push(entry(Some(name), arg, value, text)?);
            }
        } else {
            let arg = settable(
                command
                    .get_arguments()
                    .chain(command.get_subcommands().flat_map(Command::get_arguments)),
                name,
            )
            .ok_or_else(|| {
                (
                    Some(key.span()),
                    Some(name.to_owned()),
                    format!(
                        "no command has an option --{name}; a key is an option's long name without the dashes, \
                         e.g. deadline = \"5s\""
                    ),
                )
            })?;
            let why = command
                .get_subcommands()
                .filter(|sub| {
                    sub.get_arguments()
                        .any(|other| other.get_id() == arg.get_id())
                })
                .find_map(|sub| refusal(sub, arg));
            if let Some(why) = why {
                return Err((Some(key.span()), Some(name.to_owned()), why));
            }
            top.push(entry(None, arg, value, text)?);
        }
    }
    top.extend(tables);
    Ok(top)
}

/// The commands a table may be named after.
fn settable_commands(command: &Command) -> Vec<String> {
    command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && !IGNORED_BY.contains(&sub.get_name()))
        .map(|sub| format!("[{}]", sub.get_name()))
        .collect()
}

/// Whether `arg` is a setting, an option a file may give a default: named, not hidden, taking values or a switch.
pub fn is_setting(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && !arg.is_hide_set()
        && matches!(
            arg.get_action(),
            ArgAction::Set | ArgAction::Append | ArgAction::SetTrue
        )
}

/// The setting called `long` among `args`.
fn settable<'a>(mut args: impl Iterator<Item = &'a Arg>, long: &str) -> Option<&'a Arg> {
    args.find(|arg| arg.get_long() == Some(long) && is_setting(arg))
}

/// Why `arg`, an option of `owner`, may have no default in the file, if it may not.
///
/// - `--fault`: a fault left in a file would break every run with nothing on the command line to show why (it has
///   no variable either).
/// - An option that conflicts with another (`--config` and `--sources`, `--sequential` and `--compare`): clap
///   checks conflicts on what was given, not on defaults, so the file's value would silently beat the other
///   option given on the command line.
fn refusal(owner: &Command, arg: &Arg) -> Option<String> {
    let long = arg.get_long().unwrap_or_default();
    if long == "fault" {
        return Some(
            "--fault has no default on purpose: a fault left in a file would break every run with nothing on \
             the command line to show why; give it on the command line"
                .to_owned(),
        );
    }
    let mut conflicts: Vec<&Arg> = owner.get_arg_conflicts_with(arg);
    conflicts.extend(owner.get_arguments().filter(|other| {
        owner
            .get_arg_conflicts_with(other)
            .iter()
            .any(|conflict| conflict.get_id() == arg.get_id())
    }));
    let names: Vec<String> = conflicts
        .iter()
        .filter_map(|conflict| conflict.get_long().map(|long| format!("--{long}")))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "--{long} conflicts with {}, so a default for it would beat that option given on the command line; \
             give --{long} on the command line",
            names.join(", ")
        )
    })
}

/// One key's entry: its value turned into clap's words and checked by the option's parser.
fn entry(
    command: Option<&str>,
    arg: &Arg,
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    text: &str,
) -> Result<Entry, ParseError> {
    let long = arg.get_long().unwrap_or_default();
    let key = command.map_or_else(|| long.to_owned(), |command| format!("{command}.{long}"));
    let fail = |span: Range<usize>, message: String| (Some(span), Some(key.clone()), message);
    let values = words(arg, value).map_err(|message| fail(value.span(), message))?;
    if !matches!(arg.get_action(), ArgAction::SetTrue) {
        for word in &values {
            check(arg, word).map_err(|message| fail(value.span(), message))?;
        }
    }
    let (line, _) = line_and_column(text, value.span().start);
    Ok(Entry {
        command: command.map(str::to_owned),
        key: long.to_owned(),
        values,
        line,
    })
}

/// The command-line words of a TOML value for `arg`: a switch takes `true` or `false`; an option a string or a
/// number, or an array of them when it takes several.
fn words(arg: &Arg, value: &toml::Spanned<toml::de::DeValue<'_>>) -> Result<Vec<String>, String> {
    use toml::de::DeValue;
    let scalar = |value: &DeValue<'_>| match value {
        DeValue::String(text) => Some(text.to_string()),
        DeValue::Integer(integer) if integer.radix() == 10 => {
            Some(integer.as_str().replace('_', ""))
        }
        _ => None,
    };
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value.get_ref() {
            DeValue::Boolean(on) => Ok(vec![on.to_string()]),
            _ => Err("expected true or false".to_owned()),
        };
    }
    let many = matches!(arg.get_action(), ArgAction::Append) || arg.get_value_delimiter().is_some();
    match value.get_ref() {
        DeValue::Array(items) if many => items
            .iter()
            .map(|item| {
                scalar(item.get_ref()).ok_or_else(|| "expected an array of strings".to_owned())
            })
            .collect(),
        DeValue::Array(_) => {
            Err("expected one value, not an array: this option is given once".to_owned())
        }
        other => {
            let word = scalar(other)
                .ok_or_else(|| "expected a string (e.g. \"5s\") or a whole number".to_owned())?;
            Ok(match arg.get_value_delimiter() {
                Some(delimiter) => word.split(delimiter).map(str::to_owned).collect(),
                None => vec![word],
            })
        }
    }
}

/// `word` through `arg`'s own parser, as if typed after its flag: the option's bounds and choices apply.
fn check(arg: &Arg, word: &str) -> Result<(), String> {
    let probe = Arg::new("value")
        .long("value")
        .value_parser(arg.get_value_parser().clone())
        .action(ArgAction::Set);
    Command::new("tributary")
        .arg(probe)
        .try_get_matches_from([
            OsString::from("tributary"),
            OsString::from(format!("--value={word}")),
        ])
        .map(drop)
        .map_err(|error| clap_reason(&error, word))
}

/// Why clap refused a value, without its usage text: the parser's own message, or the choices.
fn clap_reason(error: &clap::Error, word: &str) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(error) {
        return source.to_string();
    }
    match error.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(choices)) => {
            format!("`{word}` is not one of {}", choices.join(", "))
        }
        _ => format!(
            "`{word}` is not a valid value ({})",
            error.kind().as_str().unwrap_or("refused")
        ),
    }
}

/// The path as the user would write it: `~` for the home directory.
pub fn display(path: &Path) -> String {
    match dirs::home_dir().and_then(|home| path.strip_prefix(home).ok().map(Path::to_owned)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::cli::Cli;

    /// The file `text`, read as the config file, and its error as the user sees it.
    fn load_text(text: &str) -> Result<ConfigFile, String> {
        let dir = std::env::temp_dir().join(format!("tributary-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.toml",
            text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&path, text).unwrap();
        let loaded = load(&Location::Named(path.clone()), &Cli::command()).map_err(|error| {
            error
                .to_string()
                .replace(&path.display().to_string(), "FILE")
        });
        let _ = std::fs::remove_file(&path);
        loaded
    }

    /// The arguments parsed with `file`'s defaults.
    fn parse_with(file: &ConfigFile, args: &[&str]) -> Cli {
        let matches = file
            .apply(Cli::command())
            .try_get_matches_from(std::iter::once("tributary").chain(args.iter().copied()))
            .unwrap();
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn a_table_beats_the_top_level_and_a_flag_beats_both() {
        let file = load_text(
            "deadline = \"3s\"\nworkers = 2\ncolor = \"never\"\nmodel = [\"simulated\"]\n\n[ask]\ndeadline = \"4s\"\ntimeline = true\n",
        )
        .unwrap();
        let crate::cli::Command::Ask(ask) = parse_with(&file, &["ask", "x"]).command else {
            panic!("not ask")
        };
        assert_eq!(ask.engine.deadline, std::time::Duration::from_secs(4));
        assert_eq!(ask.engine.workers.map(std::num::NonZeroUsize::get), Some(2));
        assert_eq!(ask.engine.models, ["simulated"]);
        assert!(ask.timeline);
        let cli = parse_with(&file, &["ask", "x", "--deadline", "9s"]);
        let crate::cli::Command::Ask(ask) = cli.command else {
            panic!("not ask")
        };
        assert_eq!(ask.engine.deadline, std::time::Duration::from_secs(9));
        assert_eq!(cli.color, crate::cli::ColorChoice::Never);
        // A required option the file gives is no longer required on the command line.
        let batch_file = load_text("[batch]\ndb = \"answers.db\"\n").unwrap();
        let crate::cli::Command::Batch(batch) =
            parse_with(&batch_file, &["batch", "questions.txt"]).command
        else {
            panic!("not batch")
        };
        assert_eq!(batch.db, std::path::PathBuf::from("answers.db"));
        // The top level's deadline for a command without a table of its own.
        let crate::cli::Command::Serve(serve) = parse_with(&file, &["serve"]).command else {
            panic!("not serve")
        };
        assert_eq!(serve.engine.deadline, std::time::Duration::from_secs(3));
        assert!(!serve.synthesize);
    }

    #[test]
    fn a_mistake_names_the_file_line_column_and_key() {
        for (text, expected) in [
            (
                "workers = 4\ndeadline = \"soon\"\n",
                "config file FILE, line 2, column 12, key `deadline`: `soon` is not a duration",
            ),
            (
                "[serve]\nlisten = \"here\"\n",
                "config file FILE, line 2, column 10, key `serve.listen`: ",
            ),
            (
                "deadlin = \"5s\"\n",
                "config file FILE, line 1, column 1, key `deadlin`: no command has an option --deadlin",
            ),
            (
                "[ask]\nlisten = \"127.0.0.1:1\"\n",
                "config file FILE, line 2, column 1, key `ask.listen`: `tributary ask` has no option --listen",
            ),
            (
                "[asc]\ndeadline = \"5s\"\n",
                "config file FILE, line 1, column 2, key `asc`: no command is called `asc`",
            ),
            (
                "executor = \"fast\"\n",
                "key `executor`: `fast` is not one of threads, processes, global-lock, inline",
            ),
            ("workers = 0\n", "key `workers`: must be at least 1"),
            (
                "timeline = \"yes\"\n",
                "key `timeline`: expected true or false",
            ),
            (
                "deadline = [\"5s\"]\n",
                "key `deadline`: expected one value, not an array",
            ),
            ("deadline = 5.5\n", "key `deadline`: expected a string"),
            (
                "[ask\n",
                "config file FILE, line 1, column 5: not valid TOML",
            ),
            // Hidden options and the hidden worker command are not settings.
            ("stall-on = \"x\"\n", "no command has an option --stall-on"),
            (
                "[ask]\ncolor = \"never\"\n",
                "key `ask.color`: --color is a global option: set it at the top level",
            ),
            (
                "fault = [\"news=hang\"]\n",
                "key `fault`: --fault has no default on purpose",
            ),
            (
                "[ask]\nfault = \"news=hang\"\n",
                "key `ask.fault`: --fault has no default on purpose",
            ),
            (
                "config = \"sources.toml\"\n",
                "key `config`: --config conflicts with --sources",
            ),
            (
                "[ask]\ncompare = true\n",
                "key `ask.compare`: --compare conflicts with --sequential",
            ),
            ("[__worker]\n", "no command is called `__worker`"),
        ] {
            let error = load_text(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_file_named_by_the_variable_must_exist_and_the_default_one_may_not() {
        let missing = std::env::temp_dir().join("tributary-no-such-config.toml");
        let error = load(&Location::Named(missing.clone()), &Cli::command()).unwrap_err();
        assert!(
            error.to_string().contains("TRIBUTARY_CONFIG_FILE names it"),
            "{error}"
        );
        let none = load(&Location::Default(missing), &Cli::command()).unwrap();
        assert!(none.path.is_none());
        assert!(
            load(&Location::Disabled, &Cli::command())
                .unwrap()
                .path
                .is_none()
        );
    }

    #[test]
    fn man_and_completions_ignore_the_file() {
        let args = |words: &[&str]| -> Vec<OsString> {
            std::iter::once("tributary")
                .chain(words.iter().copied())
                .map(OsString::from)
                .collect()
        };
        let command = Cli::command();
        assert!(is_ignored(&command, &args(&["man"])));
        assert!(is_ignored(&command, &args(&["completions", "bash"])));
        assert!(!is_ignored(&command, &args(&["ask", "x"])));
        assert!(!is_ignored(&command, &args(&["ask"])));
    }

    #[test]
    fn lines_and_columns_count_characters_from_one() {
        assert_eq!(line_and_column("a = 1", 0), (1, 1));
        assert_eq!(line_and_column("a = 1\nbé = 2", 10), (2, 4));
    }
}
