//! `tributary sources`: the simulated services, standalone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use crate::harness::tributary;

/// GETs `url` (plain http on loopback) and returns the status line and the body.
fn get(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut stream = TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
fn sources_serves_the_three_apis_and_prints_their_urls() {
    let mut child = tributary()
        .args([
            "sources",
            "--listen",
            "127.0.0.1:0",
            "--fault",
            "news=error",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary sources");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut urls = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a url line").expect("utf-8");
        urls.push(
            line.split_whitespace()
                .nth(1)
                .expect("name then url")
                .to_owned(),
        );
    }
    let (weather_status, weather_body) = get(&urls[0]);
    let (news_status, _) = get(&urls[1]);
    let (kb_status, kb_body) = get(&urls[2]);
    child.kill().expect("stop");
    let _ = child.wait();

    assert!(weather_status.contains("200"), "{weather_status}");
    assert!(weather_body.contains("Paris"), "{weather_body}");
    assert!(
        news_status.contains("500"),
        "the start-up fault applies: {news_status}"
    );
    assert!(kb_status.contains("200"), "{kb_status}");
    assert!(kb_body.contains("GIL"), "{kb_body}");
}
