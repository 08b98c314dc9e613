//! Integration tests of the `tributary` binary.

use std::process::Command;

fn tributary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
}

#[test]
fn version_prints_the_crate_version() {
    let output = tributary()
        .arg("--version")
        .output()
        .expect("run tributary");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout.trim(),
        format!("tributary {}", env!("CARGO_PKG_VERSION"))
    );
}
