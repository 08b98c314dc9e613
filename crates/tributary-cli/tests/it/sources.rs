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

#[test]
fn sources_json_prints_one_line_a_program_can_use() {
    let mut child = tributary()
        .args(["sources", "--listen", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary sources --json");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next().expect("a line").expect("utf-8");
    let listening: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("one JSON object on the first line ({error}): {line}"));
    let listen = listening["listen"].as_str().expect("listen is a string");
    let address: std::net::SocketAddr = listen.parse().expect("listen is an address");
    assert_ne!(
        address.port(),
        0,
        "the port actually bound, not the one asked for"
    );
    assert_eq!(listening["base_url"], format!("http://{listen}"));
    let endpoints = listening["endpoints"].as_object().expect("endpoints");
    let mut names: Vec<&str> = endpoints.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["kb", "news", "weather"]);
    let weather = endpoints["weather"].as_str().expect("a URL");
    let (status, body) = get(&format!("{weather}?city=Paris"));
    let kb = endpoints["kb"].as_str().expect("a URL").to_owned();
    let (kb_status, _) = get(&format!("{kb}?q=GIL"));
    child.kill().expect("stop");
    let _ = child.wait();

    assert!(status.contains("200"), "{status}");
    assert!(body.contains("Paris"), "{body}");
    assert!(kb_status.contains("200"), "{kb_status}");
    assert!(lines.next().is_none(), "nothing but the one line on stdout");
}
