//! The page at `/` in a real headless Chromium, driven by `tests/browser/page.mjs` (playwright-core with the
//! system browser): ask and watch the lanes fill, toggle a fault and see a degraded answer, compare with the
//! baseline, download the trace. Screenshots go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{missing, outside_program};
use crate::serve::Server;

const TEST: &str = "the page test in Chromium";

#[test]
fn the_page_answers_shows_the_lanes_and_a_degraded_answer_in_chromium() {
    let Some(chromium) = outside_program(
        "TRIBUTARY_CHROMIUM",
        &["chromium", "chromium-browser"],
        TEST,
        "apt-get install chromium",
    ) else {
        return;
    };
    let Some(node) = outside_program("TRIBUTARY_NODE", &["node"], TEST, "apt-get install nodejs")
    else {
        return;
    };
    let browser_tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_tests.join("node_modules/playwright-core").is_dir() {
        missing(
            "playwright-core (tests/browser/node_modules)",
            TEST,
            "npm ci --prefix crates/tributary-cli/tests/browser",
        );
        return;
    }
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&screenshots).expect("create target/screenshots");

    // A deadline short enough that a hanging source makes the answer degraded quickly.
    let server = Server::start(&["--deadline", "3s", "--per-source-timeout", "2s"]);
    let output = Command::new(node)
        .arg("page.mjs")
        .current_dir(&browser_tests)
        .env("TRIBUTARY_URL", format!("http://{}", server.address))
        .env("CHROMIUM", chromium)
        .env("SCREENSHOT_DIR", &screenshots)
        .output()
        .expect("run node page.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the page test failed ({}):\n{stdout}\n{stderr}\n(screenshots in {})",
        output.status,
        screenshots.display()
    );
    assert!(stdout.contains("ok 5"), "{stdout}");
    assert!(screenshots.join("serve-page.png").is_file());
}
