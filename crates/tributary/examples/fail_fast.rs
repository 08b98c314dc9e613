//! A fail-fast group, asyncio's `TaskGroup`: the first child that fails cancels its siblings, and the group
//! reports who failed and who was cancelled, once every child has ended.
//!
//! Run: `cargo run -p tributary --example fail_fast`

use std::time::Duration;

use tributary::group::{GroupConfig, ShutdownCause, scope};

#[derive(Debug)]
struct SourceDown(&'static str);

impl std::fmt::Display for SourceDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is down", self.0)
    }
}

async fn fetch(source: &'static str, latency: Duration, up: bool) -> Result<String, SourceDown> {
    tokio::time::sleep(latency).await;
    if up {
        Ok(format!("{source}: ok"))
    } else {
        Err(SourceDown(source))
    }
}

#[tokio::main]
async fn main() {
    let result = scope(GroupConfig::new(), |group| async move {
        let weather = group
            .spawn("weather", fetch("weather", Duration::from_millis(30), true))
            .await
            .map_err(|_| SourceDown("the group"))?;
        group
            .spawn("news", fetch("news", Duration::from_millis(10), false))
            .await
            .map_err(|_| SourceDown("the group"))?;
        group
            .spawn("kb", fetch("kb", Duration::from_secs(10), true))
            .await
            .map_err(|_| SourceDown("the group"))?;
        // The body waits for the weather; the news failing first cancels the body and every sibling.
        let weather = weather.await.map_err(|_| SourceDown("weather"))?;
        Ok(weather)
    })
    .await;

    let error = result.expect_err("news failed, so the group failed");
    println!("{error}");
    assert_eq!(
        error.cause,
        ShutdownCause::ChildFailed {
            name: "news".into()
        }
    );
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["news"]);
    let mut cancelled: Vec<&str> = error.cancelled_names().collect();
    cancelled.sort_unstable();
    assert_eq!(
        cancelled,
        ["kb", "weather"],
        "cancelled, not failed, and joined"
    );
}
