//! A custom HTTP source with the resilient client: per-attempt timeouts inside a deadline, retries with
//! full-jitter backoff, the single-flight cache and a size limit.
//!
//! The example serves its own "weather service" on loopback (a few lines of tokio, in a group the example owns),
//! which fails its first request with a 503, then answers. The client retries and gets the answer; a second
//! fetch is served from the cache.
//!
//! Run: `cargo run -p tributary --example custom_source`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tributary::group::{Deadline, OwnedGroup};
use tributary::source::{ClientOptions, SourceClient, SourceRequest, SourceSpec};

/// A weather service that fails its first request with a 503 and answers every later one.
async fn serve(listener: TcpListener, requests: Arc<AtomicUsize>) -> std::io::Result<()> {
    loop {
        let (mut connection, _) = listener.accept().await?;
        let mut request = [0_u8; 1024];
        let _ = connection.read(&mut request).await?;
        let response = if requests.fetch_add(1, Ordering::SeqCst) == 0 {
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_owned()
        } else {
            let body = r#"{"city": "Lima", "summary": "Light rain, 18°C"}"#;
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            )
        };
        connection.write_all(response.as_bytes()).await?;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?).parse()?;
    let service = OwnedGroup::<std::io::Error>::new();
    let requests = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&requests);
    service
        .group()
        .spawn("weather service", serve(listener, served))
        .await?;

    let mut weather = SourceSpec::new("weather", base_url);
    weather.timeout = Duration::from_secs(1); // per attempt
    weather.retries = 2; // after the first attempt
    weather.cache_ttl = Some(Duration::from_secs(60));
    weather.max_body_bytes = 64 * 1024;
    let client = SourceClient::new(ClientOptions::default())?;
    let request = SourceRequest::new("/weather").with_query("city", "Lima");

    let deadline = Deadline::after(Duration::from_secs(5));
    let fetched = client.fetch(&weather, &request, deadline).await?;
    println!(
        "{} after {} attempts (cached: {})",
        fetched.body["summary"], fetched.attempts, fetched.cached
    );
    assert_eq!(fetched.attempts, 2, "the 503 was retried");

    let again = client.fetch(&weather, &request, deadline).await?;
    assert!(again.cached, "the second fetch is a cache hit");
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    service.shutdown().await?;
    Ok(())
}
