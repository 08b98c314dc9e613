//! Downloading a file from the Hugging Face hub: `{HF_ENDPOINT}/{repo}/resolve/{revision}/{file}`, as the hub's
//! own client does, with `HF_TOKEN` as a bearer token for gated repositories.
//!
//! - **Resume.** The bytes go to `FILE.part` beside the target. A `.part` left by an interrupted pull is resumed
//!   with a `Range` request; a server that answers the whole file instead (200) starts it again.
//! - **Verified.** The SHA-256 of the whole file is checked before the `.part` is renamed to the target: against
//!   the catalog's, else the one the hub gives for a large (LFS) file in `X-Linked-Etag` on its redirect (which
//!   is why redirects are followed here, not by reqwest). A mismatch removes the `.part`: resuming it would only
//!   give the same wrong file. A file with no known checksum is installed and its checksum recorded.
//! - **Progress** is an indicatif bar on a terminal, nothing in a pipe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{AUTHORIZATION, ETAG, HeaderMap, LOCATION, RANGE};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::is_sha256;
use crate::error::{CliError, ErrorKind};
use crate::printer::Printer;

/// Redirects followed per file: the hub sends one, to its CDN.
const MAX_REDIRECTS: usize = 5;

/// The hub, as the environment names it.
pub struct Hub {
    client: reqwest::Client,
    endpoint: Url,
    token: Option<String>,
    printer: Printer,
}

impl Hub {
    /// `HF_ENDPOINT` (default `https://huggingface.co`) and `HF_TOKEN`.
    pub fn from_env(printer: Printer) -> Result<Self, CliError> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".to_owned());
        let endpoint = Url::parse(endpoint.trim_end_matches('/'))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                CliError::argument(format!(
                    "HF_ENDPOINT `{endpoint}` is not an http:// or https:// URL"
                ))
            })?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| CliError::internal("failed to build the HTTP client", &error))?;
        Ok(Self {
            client,
            endpoint,
            token: std::env::var("HF_TOKEN")
                .ok()
                .filter(|token| !token.is_empty()),
            printer,
        })
    }

    /// Downloads `file` of `repo` at `revision` to `target`, verified; returns its SHA-256.
    pub async fn fetch(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        target: &Path,
        expected: Option<&str>,
    ) -> Result<String, CliError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| CliError::argument("HF_ENDPOINT cannot hold a path"))?
            .pop_if_empty()
            .extend(repo.split('/'))
            .push("resolve")
            .push(revision)
            .extend(file.split('/'));
        let part = part_path(target);
        let what = format!("{repo}/{file}");
        let (sha256, downloaded) = match self.download(&url, &part, &what).await {
            Err(Failure::RangeRefused) => {
                // The `.part` is not a prefix of the file (longer, or the file changed): start again.
                remove(&part)?;
                self.download(&url, &part, &what).await
            }
            other => other,
        }
        .map_err(|failure| failure.into_error(&what, &url))?;
        let expected = expected.map(str::to_owned).or(downloaded.sha256_hint);
        if let Some(expected) = &expected
            && *expected != sha256
        {
            remove(&part)?;
            return Err(CliError::new(
                ErrorKind::Environment,
                format!(
                    "{what}: the download does not match its checksum (expected sha256 {expected}, got {sha256}); \
                     the partial file was removed"
                ),
            )
            .with_hint("pull again; if it keeps failing, the hub's file is not the one the catalog knows"));
        }
        tokio::fs::rename(&part, target)
            .await
            .map_err(|error| CliError::output(target, &error, "check the models directory"))?;
        self.printer.note(&format!(
            "{}: {:.1} MB, sha256 {sha256} ({})",
            target.display(),
            downloaded.bytes as f64 / 1_000_000.0,
            if expected.is_some() {
                "verified"
            } else {
                "no checksum to verify against: recorded"
            }
        ));
        Ok(sha256)
    }

    /// Downloads `url` into `part`, resuming what it holds; returns the SHA-256 of the whole file.
    async fn download(
        &self,
        url: &Url,
        part: &Path,
        what: &str,
    ) -> Result<(String, Downloaded), Failure> {
        let have = tokio::fs::metadata(part)
            .await
            .map_or(0, |metadata| metadata.len());
        let (response, sha256_hint) = self.get(url, have).await?;
        let status = response.status();
        let mut hasher = Sha256::new();
        let resumed = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => true,
            StatusCode::OK => false,
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Err(Failure::RangeRefused),
            status => return Err(Failure::Status(status)),
        };
        let mut file = if resumed {
            // What is already there counts in the checksum.
            let mut existing = tokio::fs::File::open(part).await.map_err(Failure::Write)?;
            let mut buffer = vec![0; 1 << 20];
            loop {
                let read = existing.read(&mut buffer).await.map_err(Failure::Write)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
            tokio::fs::OpenOptions::new().append(true).open(part).await
        } else {
            tokio::fs::File::create(part).await
        }
        .map_err(Failure::Write)?;
        let start = if resumed { have } else { 0 };
        let bar = progress_bar(what, response.content_length().map(|length| length + start));
        bar.set_position(start);
        let mut response = response;
        let mut bytes = start;
        while let Some(chunk) = response.chunk().await.map_err(Failure::Request)? {
            file.write_all(&chunk).await.map_err(Failure::Write)?;
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            bar.set_position(bytes);
        }
        file.sync_all().await.map_err(Failure::Write)?;
        bar.finish_and_clear();
        Ok((
            format!("{:x}", hasher.finalize()),
            Downloaded { bytes, sha256_hint },
        ))
    }

    /// GETs `url` from byte `from` on, following redirects; returns the final response and the SHA-256 the hub
    /// gave on the way, if any.
    async fn get(
        &self,
        url: &Url,
        from: u64,
    ) -> Result<(reqwest::Response, Option<String>), Failure> {
        let mut url = url.clone();
        let mut sha256_hint = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(url.clone());
            if from > 0 {
                request = request.header(RANGE, format!("bytes={from}-"));
            }
            // The token goes to the hub only, never to the host it redirects to.
            if let Some(token) = &self.token
                && url.origin() == self.endpoint.origin()
            {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let response = request.send().await.map_err(Failure::Request)?;
            sha256_hint = sha256_hint.or_else(|| linked_sha256(response.headers()));
            if !response.status().is_redirection() {
                return Ok((response, sha256_hint));
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or(Failure::Status(response.status()))?;
            url = location;
        }
        Err(Failure::TooManyRedirects)
    }
}

/// What one download gave besides its checksum.
struct Downloaded {
    bytes: u64,
    /// The SHA-256 the hub named for the file, if it did.
    sha256_hint: Option<String>,
}

/// Why a download failed.
enum Failure {
    Request(reqwest::Error),
    Status(StatusCode),
    Write(std::io::Error),
    RangeRefused,
    TooManyRedirects,
}

impl Failure {
    fn into_error(self, what: &str, url: &Url) -> CliError {
        let environment = |message: String| CliError::new(ErrorKind::Environment, message);
        match self {
            Self::Request(error) => environment(format!(
                "{what}: the download from {url} failed: {}",
                tributary_agent::error_chain(&error)
            ))
            .with_hint("run the same command again: what was downloaded is kept and resumed"),
            Self::Status(status)
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                environment(format!("{what}: the hub refused access ({status})")).with_hint(
                    "a gated model needs HF_TOKEN set to a token whose account accepted its terms",
                )
            }
            Self::Status(StatusCode::NOT_FOUND) => {
                environment(format!("{what}: not found at {url} (404)"))
                    .with_hint("check the repository, the file's path in it and --revision")
            }
            Self::Status(status) => environment(format!("{what}: {url} answered {status}")),
            Self::Write(error) => CliError::caused(
                ErrorKind::Output,
                format_args!("{what}: failed to write the download"),
                &error,
            ),
            Self::RangeRefused => environment(format!(
                "{what}: {url} refused to resume the download, twice"
            )),
            Self::TooManyRedirects => environment(format!(
                "{what}: more than {MAX_REDIRECTS} redirects from {url}"
            )),
        }
    }
}

/// The SHA-256 the hub gives for an LFS file: `X-Linked-Etag` on its redirect (`ETag` when served directly).
fn linked_sha256(headers: &HeaderMap) -> Option<String> {
    [headers.get("x-linked-etag"), headers.get(ETAG)]
        .into_iter()
        .flatten()
        .filter_map(|value| value.to_str().ok())
        .map(|value| {
            value
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        })
        .find(|value| is_sha256(value))
}

fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    target.with_file_name(name)
}

fn remove(part: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(CliError::output(part, &error, "remove it by hand")),
    }
}

fn progress_bar(what: &str, total: Option<u64>) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .expect("the progress template is valid")
    .progress_chars("=> ");
    ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what.to_owned())
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_hubs_checksum_is_read_from_its_etags() {
        let sha = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
        let mut headers = HeaderMap::new();
        headers.insert(ETAG, HeaderValue::from_static("\"a-git-blob-id\""));
        assert_eq!(linked_sha256(&headers), None);
        headers.insert(
            "x-linked-etag",
            HeaderValue::from_str(&format!("\"{sha}\"")).expect("a header value"),
        );
        assert_eq!(linked_sha256(&headers).as_deref(), Some(sha));
        assert_eq!(
            part_path(Path::new("/m/a.gguf")),
            PathBuf::from("/m/a.gguf.part")
        );
    }
}
