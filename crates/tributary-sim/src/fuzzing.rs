//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): what a request's query string goes through,
//! without a server, latency or faults. Not part of the API: it may change at any time.

use std::collections::HashMap;

use crate::config::Service;
use crate::fault;
use crate::kb::KnowledgeBase;
use crate::news::{self, NewsIndex};
use crate::server::{parse_query as parse_raw_query, status_and_body};
use crate::weather;

/// The query parameters of a raw query string, as every handler reads them (the last one wins when repeated).
pub fn parse_query(query: &str) -> HashMap<String, String> {
    parse_raw_query(Some(query))
}

/// The data of the three services, built once.
#[derive(Debug)]
pub struct Services {
    seed: u64,
    news: NewsIndex,
    kb: KnowledgeBase,
}

impl Services {
    /// Generates the news corpus and builds the knowledge base for `seed`. Blocking.
    pub fn build(seed: u64) -> Result<Self, rusqlite::Error> {
        Ok(Self {
            seed,
            news: NewsIndex::build(seed),
            kb: KnowledgeBase::build()?,
        })
    }

    /// The status and JSON body `service` answers to the raw query string `query`: the fault overrides are read
    /// (a bad one is a 400) but neither latency nor fault is applied. The knowledge base needs a tokio runtime.
    pub async fn answer(&self, service: Service, query: &str) -> (u16, Vec<u8>) {
        let params = parse_raw_query(Some(query));
        let (status, body) = match fault::parse_overrides(&params) {
            Err(error) => (error.status, error.body()),
            Ok(_) => match service {
                Service::Weather => status_and_body(weather::answer(self.seed, &params)),
                Service::News => status_and_body(news::answer(&self.news, &params)),
                Service::KnowledgeBase => status_and_body(self.kb.answer(&params).await),
            },
        };
        (status.as_u16(), body)
    }
}
