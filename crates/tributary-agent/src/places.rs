//! Finding the place a question is about, for sources of the `weather` kind.
//!
//! The agent does not know which places a weather service understands; whoever builds the agent does. The
//! simulated services know their gazetteer of cities (`tributary_sim::find_city_in_text`), a real weather
//! API would geocode names itself. So the planner asks a [`PlaceFinder`] it is given, and any
//! `Fn(&str) -> Option<String>` is one:
//!
//! ```
//! use std::sync::Arc;
//! use tributary_agent::places::{NoPlaces, PlaceFinder};
//!
//! let known: Arc<dyn PlaceFinder> =
//!     Arc::new(|text: &str| text.contains("Lima").then(|| "Lima".to_owned()));
//! assert_eq!(known.find_place("Is it raining in Lima?").as_deref(), Some("Lima"));
//! assert_eq!(NoPlaces.find_place("Is it raining in Lima?"), None);
//! ```

use std::fmt;

/// Finds the place a question names, as the name to send to a weather source.
pub trait PlaceFinder: Send + Sync {
    /// The place `text` names, if it names one the weather sources are likely to know.
    fn find_place(&self, text: &str) -> Option<String>;
}

impl<F> PlaceFinder for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn find_place(&self, text: &str) -> Option<String> {
        self(text)
    }
}

impl fmt::Debug for dyn PlaceFinder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("PlaceFinder")
    }
}

/// Finds no place: weather sources are always skipped. The default until a driver provides a finder.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPlaces;

impl PlaceFinder for NoPlaces {
    fn find_place(&self, _text: &str) -> Option<String> {
        None
    }
}
