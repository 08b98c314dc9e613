//! Open-Meteo (<https://open-meteo.com>), keyless: geocoding the place the question names, then its current
//! conditions, in words.
//!
//! Free tier: 600 calls a minute, 5,000 an hour, 10,000 a day; a question costs two (one when the geocoding
//! answer is cached).

use std::sync::Arc;

use serde_json::{Value, json};
use tributary::source::SourceRequest;
use url::Url;

use super::{Endpoint, NextRequest, Reading, query_value, text_field};

/// The forecast API: a source's default `base_url`.
pub const FORECAST_URL: &str = "https://api.open-meteo.com";
/// The geocoding API: a source's default `geocoding_url`.
pub const GEOCODING_URL: &str = "https://geocoding-api.open-meteo.com";

/// The current conditions asked for.
const CURRENT: &str = "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,wind_speed_10m";

/// [`GEOCODING_URL`], parsed.
pub(crate) fn geocoding_url() -> Url {
    Url::parse(GEOCODING_URL).expect("a valid URL")
}

/// The geocoding request for `place`.
pub(crate) fn geocode_request(place: &str) -> SourceRequest {
    SourceRequest::new("/v1/search")
        .with_query("name", place)
        .with_query("count", "1")
        .with_query("language", "en")
        .with_query("format", "json")
}

/// The forecast request for a place's coordinates.
fn forecast_request(latitude: f64, longitude: f64) -> SourceRequest {
    SourceRequest::new("/v1/forecast")
        .with_query("latitude", latitude.to_string())
        .with_query("longitude", longitude.to_string())
        .with_query("current", CURRENT)
        .with_query("timezone", "auto")
}

/// The geocoding answer: the first place with coordinates, then its forecast; or no such place (the response
/// has no `results` at all when nothing matches).
pub(crate) fn read_geocoding(request: &SourceRequest, body: &Value) -> Reading {
    let asked = query_value(request, "name").unwrap_or_default();
    let Some(place) = body
        .get("results")
        .and_then(Value::as_array)
        .and_then(|results| results.first())
    else {
        return Reading::NoResult(format!("Open-Meteo knows no place named \"{asked}\""));
    };
    let coordinate = |key: &str, limit: f64| {
        place
            .get(key)
            .and_then(Value::as_f64)
            .filter(|value| value.abs() <= limit)
    };
    let (Some(latitude), Some(longitude)) =
        (coordinate("latitude", 90.0), coordinate("longitude", 180.0))
    else {
        return Reading::NoResult(format!(
            "Open-Meteo found \"{asked}\" but gave no coordinates for it"
        ));
    };
    let mut kept = json!({ "asked": asked });
    for key in ["name", "admin1", "country", "timezone"] {
        if let Some(text) = text_field(place, key) {
            kept[key] = Value::from(text);
        }
    }
    Reading::Next(NextRequest {
        request: forecast_request(latitude, longitude),
        endpoint: Endpoint::Base,
        keep: kept,
    })
}

/// The forecast answer for the place kept from geocoding: the body inference reads is
/// `{"place": PLACE, "forecast": BODY}`, or no result when there are no current conditions in it.
pub(crate) fn read_forecast(place: &Value, body: &Value) -> Reading {
    let answer = json!({ "place": place, "forecast": body });
    if conditions(&answer).is_some() {
        Reading::Answer(Arc::new(answer))
    } else {
        Reading::NoResult(format!(
            "Open-Meteo has no current conditions for {}",
            place_label(place)
        ))
    }
}

/// The text inference reads: "Current weather in Lyon, Auvergne-Rhône-Alpes, France: overcast, 12.3 °C (feels
/// like 10.1 °C), humidity 81%, wind 14.2 km/h, precipitation 0.0 mm."
pub(crate) fn text(body: &Value) -> Option<String> {
    let conditions = conditions(body)?;
    let place = body.get("place").unwrap_or(&Value::Null);
    Some(format!(
        "Current weather in {}: {conditions}.",
        place_label(place)
    ))
}

/// The current conditions of a `{"place", "forecast"}` body, as a list of words; `None` when there are none.
fn conditions(body: &Value) -> Option<String> {
    let forecast = body.get("forecast")?;
    let current = forecast
        .get("current")
        .filter(|current| current.is_object())?;
    let units = forecast.get("current_units").unwrap_or(&Value::Null);
    let measure = |key: &str, default_unit: &str, decimals: usize| -> Option<String> {
        let value = current.get(key).and_then(Value::as_f64)?;
        let unit = text_field(units, key).unwrap_or(default_unit);
        let space = if unit == "%" { "" } else { " " };
        Some(format!("{value:.decimals$}{space}{unit}"))
    };
    let mut parts = Vec::new();
    if let Some(code) = current.get("weather_code").and_then(Value::as_f64) {
        parts.push(describe_weather_code(code));
    }
    let feels_like = measure("apparent_temperature", "°C", 1);
    match (measure("temperature_2m", "°C", 1), feels_like) {
        (Some(temperature), Some(feels)) => {
            parts.push(format!("{temperature} (feels like {feels})"))
        }
        (Some(temperature), None) => parts.push(temperature),
        (None, Some(feels)) => parts.push(format!("feels like {feels}")),
        (None, None) => {}
    }
    if let Some(humidity) = measure("relative_humidity_2m", "%", 0) {
        parts.push(format!("humidity {humidity}"));
    }
    if let Some(wind) = measure("wind_speed_10m", "km/h", 1) {
        parts.push(format!("wind {wind}"));
    }
    if let Some(precipitation) = measure("precipitation", "mm", 1) {
        parts.push(format!("precipitation {precipitation}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// "Lyon, Auvergne-Rhône-Alpes, France" from what geocoding found (a part repeating the one before it is
/// dropped: "Berlin, Germany", not "Berlin, Berlin, Germany"); the name asked when geocoding gave none.
fn place_label(place: &Value) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let name = text_field(place, "name").or_else(|| text_field(place, "asked"));
    for part in [
        name,
        text_field(place, "admin1"),
        text_field(place, "country"),
    ]
    .into_iter()
    .flatten()
    {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "the place asked".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A WMO weather code in words (the codes Open-Meteo documents); another code is named as such.
pub(crate) fn describe_weather_code(code: f64) -> String {
    let whole = (code.fract() == 0.0 && (0.0..=255.0).contains(&code)).then_some(code as u8);
    let words = match whole {
        None => return format!("weather code {code}"),
        Some(code) => match code {
            0 => "clear sky",
            1 => "mainly clear",
            2 => "partly cloudy",
            3 => "overcast",
            45 | 48 => "fog",
            51 => "light drizzle",
            53 => "moderate drizzle",
            55 => "dense drizzle",
            56 => "light freezing drizzle",
            57 => "dense freezing drizzle",
            61 => "slight rain",
            63 => "moderate rain",
            65 => "heavy rain",
            66 => "light freezing rain",
            67 => "heavy freezing rain",
            71 => "slight snow",
            73 => "moderate snow",
            75 => "heavy snow",
            77 => "snow grains",
            80 => "slight rain showers",
            81 => "moderate rain showers",
            82 => "violent rain showers",
            85 => "slight snow showers",
            86 => "heavy snow showers",
            95 => "thunderstorm",
            96 => "thunderstorm with slight hail",
            99 => "thunderstorm with heavy hail",
            _ => return format!("weather code {code}"),
        },
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecast(current: Value) -> Value {
        json!({
            "place": {"asked": "Lyon", "name": "Lyon", "admin1": "Auvergne-Rhône-Alpes", "country": "France"},
            "forecast": {
                "current_units": {"temperature_2m": "°C", "relative_humidity_2m": "%", "wind_speed_10m": "km/h"},
                "current": current
            }
        })
    }

    #[test]
    fn the_current_conditions_read_as_one_sentence() {
        let body = forecast(json!({
            "time": "2025-03-14T15:00", "temperature_2m": 12.3, "relative_humidity_2m": 81,
            "apparent_temperature": 10.1, "precipitation": 0.0, "weather_code": 3, "wind_speed_10m": 14.2
        }));
        assert_eq!(
            text(&body).as_deref(),
            Some(
                "Current weather in Lyon, Auvergne-Rhône-Alpes, France: overcast, 12.3 °C (feels like 10.1 °C), \
                 humidity 81%, wind 14.2 km/h, precipitation 0.0 mm."
            )
        );
    }

    #[test]
    fn missing_and_null_fields_shorten_the_sentence() {
        let body = forecast(
            json!({"temperature_2m": null, "weather_code": 95, "apparent_temperature": -3}),
        );
        assert_eq!(
            text(&body).as_deref(),
            Some(
                "Current weather in Lyon, Auvergne-Rhône-Alpes, France: thunderstorm, feels like -3.0 °C."
            )
        );
        assert_eq!(text(&forecast(json!({}))), None);
        assert_eq!(text(&forecast(json!("sunny"))), None);
        assert_eq!(text(&json!({"place": 1})), None);
        assert_eq!(text(&json!([1, 2])), None);
    }

    #[test]
    fn every_documented_weather_code_has_words() {
        for code in [
            0, 1, 2, 3, 45, 48, 51, 53, 55, 56, 57, 61, 63, 65, 66, 67, 71, 73, 75, 77, 80, 81, 82,
            85, 86, 95, 96, 99,
        ] {
            let words = describe_weather_code(f64::from(code));
            assert!(!words.starts_with("weather code"), "{code}: {words}");
        }
        assert_eq!(describe_weather_code(4.0), "weather code 4");
        assert_eq!(describe_weather_code(3.5), "weather code 3.5");
    }

    #[test]
    fn geocoding_without_results_or_coordinates_is_no_result() {
        let request = geocode_request("Atlantis");
        for body in [
            json!({"generationtime_ms": 0.5}),
            json!({"results": []}),
            json!({"results": null}),
            json!({"results": [{"name": "Atlantis"}]}),
            json!({"results": [{"name": "Atlantis", "latitude": "north", "longitude": 3}]}),
            json!({"results": [{"latitude": 91.0, "longitude": 3}]}),
            json!([]),
        ] {
            let Reading::NoResult(why) = read_geocoding(&request, &body) else {
                panic!("{body}: not a no-result");
            };
            assert!(why.contains("\"Atlantis\""), "{why}");
        }
    }

    #[test]
    fn a_place_found_asks_for_its_forecast_and_keeps_its_name() {
        let body = json!({"results": [{"name": "Lyon", "latitude": 45.74846, "longitude": 4.84671, "country": "France", "admin1": null}]});
        let Reading::Next(next) = read_geocoding(&geocode_request("Lyon"), &body) else {
            panic!("a next request");
        };
        assert_eq!(next.endpoint, Endpoint::Base);
        assert_eq!(next.request.path, "/v1/forecast");
        assert_eq!(query_value(&next.request, "latitude"), Some("45.74846"));
        assert_eq!(query_value(&next.request, "longitude"), Some("4.84671"));
        assert_eq!(
            next.keep,
            json!({"asked": "Lyon", "name": "Lyon", "country": "France"})
        );
    }

    #[test]
    fn a_forecast_without_current_conditions_is_no_result() {
        let place = json!({"asked": "Lyon", "name": "Lyon", "country": "France"});
        let Reading::NoResult(why) = read_forecast(&place, &json!({"hourly": {}})) else {
            panic!("no result");
        };
        assert_eq!(why, "Open-Meteo has no current conditions for Lyon, France");
    }
}
