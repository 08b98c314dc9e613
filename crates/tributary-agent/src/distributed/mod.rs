//! placeholder
#[expect(unused_imports, reason = "probe")]
use async_nats::jetstream;
