//! The simulated services' query strings: `parse_query` (every handler's), the fault overrides, and each
//! service's answer to the parameters (the weather's city lookup, the news BM25 search, the knowledge base's
//! FTS5 query), without a server, latency or faults; plus the planner's city finder on the same text.
//!
//! Input: one byte choosing the service, then the raw query string (what follows `?`). A raw query reaching the
//! server is ASCII (the URI parser sees to it), but its percent-escapes decode to any bytes; the fuzzer's bytes
//! are read as lossy UTF-8 and escapes are left to it.
//!
//! Every answer must be a 200, or a 400 or 404 with a JSON error body: a 500 here is a query the service could
//! not run (e.g. an FTS5 expression SQLite rejects).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tributary_sim::Service;
use tributary_sim::fuzzing::{Services, parse_query};

/// The services' data and a runtime for the knowledge base's blocking query, built once per process.
fn fixture() -> &'static (tokio::runtime::Runtime, Services) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, Services)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let services = Services::build(42).expect("the knowledge base builds");
        (runtime, services)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let service = Service::ALL[usize::from(selector) % Service::ALL.len()];
    let query = String::from_utf8_lossy(query);

    let _ = parse_query(&query);
    let _ = tributary_sim::find_city_in_text(&query);

    let (runtime, services) = fixture();
    let (status, body) = runtime.block_on(services.answer(service, &query));
    assert!(
        matches!(status, 200 | 400 | 404),
        "{service} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let body: serde_json::Value = serde_json::from_slice(&body).expect("every body is JSON");
    if status != 200 {
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "an error without a message: {body}"
        );
    }
});
