//! `tributary config [COMMAND]`: the defaults a command runs with when no flag is given, and where each comes
//! from: its variable, the config file (with the line), or built in. The same precedence as parsing (flag >
//! variable > file > built-in), read off the same `clap::Command`.

use clap::{Arg, ArgAction, CommandFactory as _};
use unicode_width::UnicodeWidthStr as _;

use crate::cli::Cli;
use crate::config_file::{self, ConfigFile, Location};
use crate::error::{CliError, Outcome};
use crate::printer::Printer;

/// One option's default in effect.
struct Setting {
    option: String,
    value: String,
    from: String,
}

pub fn run(command_name: &str, printer: Printer) -> Result<Outcome, CliError> {
    let cli = Cli::command();
    let location = config_file::locate();
    let file = config_file::load(&location, &cli)?;
    let command = cli
        .find_subcommand(command_name)
        .expect("the parser allows only commands");
    let settings: Vec<Setting> = command
        .get_arguments()
        .chain(cli.get_arguments())
        .filter(|arg| config_file::is_setting(arg))
        .map(|arg| setting(command_name, arg, &file))
        .collect();
    let mut out = format!("{}\n", file_line(&location, &file));
    out.push_str(&format!(
        "Defaults of `tributary {command_name}` (a flag on the command line beats them all):\n\n"
    ));
    out.push_str(&table(&settings));
    printer.data(&out)?;
    Ok(Outcome::Done)
}

/// Where the config file is, and whether it was read.
fn file_line(location: &Location, file: &ConfigFile) -> String {
    match (location, &file.path) {
        (_, Some(path)) => format!("Config file: {}", config_file::display(path)),
        (Location::Default(path), None) => format!(
            "Config file: none ({} does not exist; {} names another)",
            config_file::display(path),
            config_file::VARIABLE
        ),
        (Location::Disabled, None) => {
            format!("Config file: none ({} is empty)", config_file::VARIABLE)
        }
        (Location::Named(_) | Location::Unknown, None) => format!(
            "Config file: none (no config directory is known; {} names one)",
            config_file::VARIABLE
        ),
    }
}

/// `arg`'s default for `command` and where it comes from.
fn setting(command: &str, arg: &Arg, file: &ConfigFile) -> Setting {
    let long = arg.get_long().unwrap_or_default();
    let variable = arg.get_env().and_then(|name| {
        Some((
            name.to_string_lossy().into_owned(),
            std::env::var(name).ok()?,
        ))
    });
    let (value, from) = if let Some((name, value)) = variable {
        (value, format!("variable {name}"))
    } else if let Some(entry) = file.entry(command, long) {
        let table = entry
            .command
            .as_deref()
            .map_or_else(String::new, |table| format!(" [{table}]"));
        (
            entry.values.join(","),
            format!("config file{table}, line {}", entry.line),
        )
    } else {
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let value = match (defaults.is_empty(), arg.get_action()) {
            (true, ArgAction::SetTrue) => "false".to_owned(),
            (true, _) => "-".to_owned(),
            (false, _) => defaults.join(","),
        };
        (value, "built-in".to_owned())
    };
    Setting {
        option: format!("--{long}"),
        value,
        from,
    }
}

/// The settings as aligned columns.
fn table(settings: &[Setting]) -> String {
    let width = |cell: fn(&Setting) -> &str, header: &str| {
        settings
            .iter()
            .map(|setting| cell(setting).width())
            .chain([header.width()])
            .max()
            .unwrap_or_default()
    };
    let option_width = width(|setting| &setting.option, "option");
    let value_width = width(|setting| &setting.value, "value");
    let row = |option: &str, value: &str, from: &str| {
        format!(
            "{option}{}  {value}{}  {from}\n",
            " ".repeat(option_width - option.width()),
            " ".repeat(value_width - value.width())
        )
    };
    let mut out = row("option", "value", "from");
    for setting in settings {
        out.push_str(&row(&setting.option, &setting.value, &setting.from));
    }
    out
}
