//! The page at `/` in a real headless Chromium, driven by `tests/browser/page.mjs` (playwright-core with the
//! system browser): ask and watch the lanes fill, toggle a fault and see a degraded answer, compare with the
//! baseline, download the trace; and a chat model's words appearing as they are written. Screenshots go to
//! `target/screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{missing, outside_program};
use crate::serve::Server;

const TEST: &str = "the page test in Chromium";

/// What the browser tests need: Chromium, node, playwright-core; `None` (a visible skip) when one is missing.
struct Browser {
    chromium: PathBuf,
    node: PathBuf,
    tests: PathBuf,
    screenshots: PathBuf,
}

impl Browser {
    fn find() -> Option<Self> {
        let chromium = outside_program(
            "TRIBUTARY_CHROMIUM",
            &["chromium", "chromium-browser"],
            TEST,
            "apt-get install chromium",
        )?;
        let node = outside_program("TRIBUTARY_NODE", &["node"], TEST, "apt-get install nodejs")?;
        let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !tests.join("node_modules/playwright-core").is_dir() {
            missing(
                "playwright-core (tests/browser/node_modules)",
                TEST,
                "npm ci --prefix crates/tributary-cli/tests/browser",
            );
            return None;
        }
        let screenshots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&screenshots).expect("create target/screenshots");
        Some(Self {
            chromium,
            node,
            tests,
            screenshots,
        })
    }

    /// Runs `page.mjs` against `server` with the steps of `script`; its standard output, once it succeeded.
    fn run(&self, server: &Server, script: &str) -> String {
        let output = Command::new(&self.node)
            .arg("page.mjs")
            .current_dir(&self.tests)
            .env("TRIBUTARY_URL", format!("http://{}", server.address))
            .env("CHROMIUM", &self.chromium)
            .env("SCREENSHOT_DIR", &self.screenshots)
            .env("STEPS", script)
            .output()
            .expect("run node page.mjs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the page test failed ({}):\n{stdout}\n{stderr}\n(screenshots in {})",
            output.status,
            self.screenshots.display()
        );
        stdout
    }
}

#[test]
fn the_page_answers_shows_the_lanes_and_a_degraded_answer_in_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    // A deadline short enough that a hanging source makes the answer degraded quickly.
    let server = Server::start(&["--deadline", "3s", "--per-source-timeout", "2s"]);
    let stdout = browser.run(&server, "run");
    assert!(stdout.contains("ok 5"), "{stdout}");
    assert!(browser.screenshots.join("serve-page.png").is_file());
}

/// With a chat model, each source's words appear under the answer as they are written, and give way to the
/// answer. The chat model is an OpenAI-compatible endpoint of this test that writes a word every 300 ms.
#[test]
fn the_page_shows_a_chat_models_words_as_they_come_in_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let endpoint = slow_chat_endpoint(&["Take", " an", " umbrella."], Duration::from_millis(300));
    let model = format!("openai:tiny-chat@http://{endpoint}/v1");
    let server = Server::start(&["--model", &model, "--deadline", "10s"]);
    let stdout = browser.run(&server, "writing");
    assert!(stdout.contains("ok 2"), "{stdout}");
}

/// A chat completions endpoint on a free loopback port that answers every request with `pieces`, streamed one
/// by one `pause` apart; its address.
fn slow_chat_endpoint(pieces: &'static [&'static str], pause: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                continue;
            };
            std::thread::spawn(move || answer_slowly(stream, pieces, pause));
        }
    });
    address
}

/// Reads one request (its head and its body) and streams the completion; the connection closes after it.
fn answer_slowly(stream: TcpStream, pieces: &[&str], pause: Duration) {
    let mut reader = BufReader::new(&stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut writer = &stream;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in pieces {
        std::thread::sleep(pause);
        let chunk = serde_json::json!({"choices": [{"delta": {"content": piece}}]});
        if writer
            .write_all(format!("data: {chunk}\n\n").as_bytes())
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
    let _ = writer.write_all(b"data: [DONE]\n\n");
}
