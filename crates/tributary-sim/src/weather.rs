//! The weather service: deterministic, climate-plausible conditions for a known city.
//!
//! The "climate" is a simple model: a mean temperature falling with distance from the equator, a seasonal swing
//! that is small in the tropics and large near the poles, and day-to-day noise. Snow needs freezing temperatures,
//! so Singapore never gets any; thunderstorms are a tropical speciality. Two local quirks matter enough to model:
//! altitude (Quito and La Paz are cool despite the equator) and deserts (rain in Riyadh is rare).

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::cities::{City, find_city};
use super::error::ApiError;
use super::fault::Params;
use super::seed::rng_for;

/// Days in the forecast.
const FORECAST_DAYS: u32 = 3;

/// The body of `GET /weather`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct WeatherReport {
    city: CityInfo,
    current: Current,
    forecast: Vec<ForecastDay>,
    summary: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct CityInfo {
    name: &'static str,
    country: &'static str,
    latitude: f64,
    longitude: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct Current {
    condition: &'static str,
    temperature_c: f64,
    feels_like_c: f64,
    humidity_pct: u32,
    wind_kph: f64,
    wind_direction: &'static str,
    precipitation_mm: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct ForecastDay {
    days_ahead: u32,
    condition: &'static str,
    high_c: f64,
    low_c: f64,
    precipitation_chance_pct: u32,
}

/// Answers `GET /weather?city=NAME`: 400 without a city, 404 for a city we do not know.
pub(crate) fn answer(seed: u64, params: &Params) -> Result<WeatherReport, ApiError> {
    let name = params
        .get("city")
        .map(|name| name.trim())
        .filter(|name| !name.is_empty());
    let name = name.ok_or_else(|| ApiError::missing_parameter("city"))?;
    let city = find_city(name).ok_or_else(|| {
        ApiError::not_found("unknown_city", format!("no weather data for city {name:?}"))
    })?;
    Ok(report(seed, city))
}

/// The deterministic report for `city` under `seed`.
fn report(seed: u64, city: &'static City) -> WeatherReport {
    let mut rng = rng_for(seed, &format!("weather/{}", city.name));
    let climate = Climate::of(city, &mut rng);
    let temperature = climate.mean + rng.random_range(-3.0..3.0);
    let humidity = climate.humidity(&mut rng);
    let wind = rng.random_range(0.0..35.0_f64);
    let condition = climate.condition(temperature, &mut rng);
    let current = Current {
        condition: condition.name,
        temperature_c: round1(temperature),
        feels_like_c: round1(feels_like(temperature, humidity, wind)),
        humidity_pct: humidity,
        wind_kph: round1(wind),
        wind_direction: COMPASS[rng.random_range(0..COMPASS.len())],
        precipitation_mm: round1(condition.wetness * rng.random_range(0.5..6.0)),
    };
    let mut day_mean = temperature;
    let forecast: Vec<ForecastDay> = (1..=FORECAST_DAYS)
        .map(|days_ahead| {
            day_mean = 0.7 * day_mean + 0.3 * climate.mean + rng.random_range(-2.5..2.5);
            let condition = climate.condition(day_mean, &mut rng);
            let high = day_mean + rng.random_range(2.0..6.0);
            let low = day_mean - rng.random_range(2.0..7.0);
            let chance = condition.wetness * 85.0 + rng.random_range(0.0..15.0);
            ForecastDay {
                days_ahead,
                condition: condition.name,
                high_c: round1(high),
                low_c: round1(low),
                precipitation_chance_pct: chance.round().clamp(0.0, 100.0) as u32,
            }
        })
        .collect();
    let summary = summarize(city, &current, &forecast[0]);
    WeatherReport {
        city: CityInfo {
            name: city.name,
            country: city.country,
            latitude: city.latitude,
            longitude: city.longitude,
        },
        current,
        forecast,
        summary,
    }
}

/// One sentence the agent's text inference can read.
fn summarize(city: &City, current: &Current, tomorrow: &ForecastDay) -> String {
    format!(
        "{} in {}, {}, at {:.1}°C (feels like {:.1}°C) with {:.0} km/h winds from the {}; tomorrow {}, {:.1} to {:.1}°C.",
        capitalize(current.condition),
        city.name,
        city.country,
        current.temperature_c,
        current.feels_like_c,
        current.wind_kph,
        current.wind_direction,
        tomorrow.condition,
        tomorrow.low_c,
        tomorrow.high_c,
    )
}

struct Climate {
    /// Mean temperature for this (simulated) time of year, °C.
    mean: f64,
    tropical: bool,
    /// Deserts: low humidity, no rain.
    arid: bool,
}

struct Condition {
    name: &'static str,
    /// 0 = dry, 1 = pouring: scales precipitation amount and chance.
    wetness: f64,
}

const fn condition(name: &'static str, wetness: f64) -> Condition {
    Condition { name, wetness }
}

const TROPICAL: &[Condition] = &[
    condition("sunny", 0.0),
    condition("hot and humid", 0.05),
    condition("partly cloudy", 0.1),
    condition("scattered showers", 0.5),
    condition("thunderstorms", 0.9),
    condition("heavy rain", 1.0),
];
const TEMPERATE: &[Condition] = &[
    condition("clear", 0.0),
    condition("sunny", 0.0),
    condition("partly cloudy", 0.1),
    condition("overcast", 0.2),
    condition("fog", 0.15),
    condition("light rain", 0.6),
    condition("rain", 0.85),
    condition("mist", 0.1),
];
const ARID: &[Condition] = &[
    condition("sunny", 0.0),
    condition("clear", 0.0),
    condition("hazy", 0.0),
    condition("dusty", 0.0),
    condition("partly cloudy", 0.0),
];

/// Cities whose weather the latitude alone gets wrong: (name, elevation in metres, arid).
const LOCAL_QUIRKS: &[(&str, f64, bool)] = &[
    ("La Paz", 3640.0, false),
    ("Quito", 2850.0, false),
    ("Bogotá", 2640.0, false),
    ("Addis Ababa", 2355.0, false),
    ("Mexico City", 2240.0, false),
    ("Nairobi", 1795.0, false),
    ("Johannesburg", 1753.0, false),
    ("Denver", 1609.0, false),
    ("Kigali", 1567.0, false),
    ("Guadalajara", 1566.0, false),
    ("Medellín", 1495.0, false),
    ("Harare", 1490.0, false),
    ("Kathmandu", 1400.0, false),
    ("Ulaanbaatar", 1350.0, false),
    ("Antananarivo", 1280.0, false),
    ("Tehran", 1190.0, true),
    ("Kampala", 1190.0, false),
    ("Brasília", 1172.0, false),
    ("Calgary", 1045.0, false),
    ("Yerevan", 990.0, false),
    ("Amman", 780.0, true),
    ("Riyadh", 610.0, true),
    ("Las Vegas", 610.0, true),
    ("Khartoum", 380.0, true),
    ("Cairo", 23.0, true),
    ("Dubai", 5.0, true),
    ("Abu Dhabi", 5.0, true),
    ("Doha", 10.0, true),
    ("Muscat", 15.0, true),
    ("Jeddah", 12.0, true),
    ("Baghdad", 34.0, true),
    ("Karachi", 10.0, true),
    ("Lima", 150.0, true),
];

/// Mean temperature falls by about 5 °C per kilometre of altitude (what tropical highland cities show).
const LAPSE_RATE_PER_METRE: f64 = 0.005;
const FREEZING: &[Condition] = &[
    condition("clear and cold", 0.0),
    condition("overcast", 0.2),
    condition("light snow", 0.6),
    condition("snow", 0.9),
    condition("freezing fog", 0.2),
];

const COMPASS: [&str; 8] = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

impl Climate {
    fn of(city: &City, rng: &mut StdRng) -> Self {
        let distance_from_equator = city.latitude.abs();
        let annual_mean = 28.0 - 0.55 * (distance_from_equator - 12.0).max(0.0);
        // The seasonal swing grows with latitude: ±1 °C at the equator, ±12 °C near the Arctic circle.
        let swing = 1.0 + 11.0 * (distance_from_equator / 66.0).min(1.0);
        let season: f64 = rng.random_range(-1.0..1.0);
        let (elevation, arid) = LOCAL_QUIRKS
            .iter()
            .find(|(name, _, _)| *name == city.name)
            .map_or((0.0, false), |&(_, elevation, arid)| (elevation, arid));
        Climate {
            mean: annual_mean + swing * season - LAPSE_RATE_PER_METRE * elevation,
            tropical: distance_from_equator < 23.5,
            arid,
        }
    }

    fn humidity(&self, rng: &mut StdRng) -> u32 {
        if self.arid {
            rng.random_range(10..=40)
        } else if self.tropical {
            rng.random_range(65..=95)
        } else {
            rng.random_range(35..=90)
        }
    }

    fn condition(&self, temperature: f64, rng: &mut StdRng) -> &'static Condition {
        let choices = if temperature <= 0.5 {
            FREEZING
        } else if self.arid {
            ARID
        } else if self.tropical && temperature >= 20.0 {
            TROPICAL
        } else {
            TEMPERATE
        };
        &choices[rng.random_range(0..choices.len())]
    }
}

/// Wind chill below 10 °C, a muggy bonus above 26 °C, otherwise the temperature itself.
fn feels_like(temperature: f64, humidity: u32, wind_kph: f64) -> f64 {
    if temperature < 10.0 {
        temperature - wind_kph / 8.0
    } else if temperature > 26.0 && humidity > 60 {
        temperature + f64::from(humidity - 60) / 8.0
    } else {
        temperature
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn capitalize(text: &str) -> String {
    let mut characters = text.chars();
    characters
        .next()
        .map(|first| first.to_uppercase().chain(characters).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cities::cities;

    fn params(city: &str) -> Params {
        Params::from([("city".to_owned(), city.to_owned())])
    }

    #[test]
    fn reports_are_deterministic_and_depend_on_the_seed() {
        let paris = answer(1, &params("paris")).expect("known city");
        assert_eq!(paris, answer(1, &params("PARIS")).expect("known city"));
        assert_ne!(paris, answer(2, &params("paris")).expect("known city"));
        assert_eq!(paris.forecast.len(), FORECAST_DAYS as usize);
        assert!(
            paris
                .summary
                .starts_with(&capitalize(paris.current.condition)),
            "{}",
            paris.summary
        );
        assert!(paris.summary.contains("Paris, France"), "{}", paris.summary);
    }

    #[test]
    fn no_snow_in_the_tropics() {
        let tropical: Vec<&City> = cities()
            .iter()
            .filter(|city| city.latitude.abs() < 15.0)
            .collect();
        assert!(tropical.len() > 10);
        for seed in 0..50 {
            for city in &tropical {
                let report = report(seed, city);
                let conditions = std::iter::once(report.current.condition)
                    .chain(report.forecast.iter().map(|day| day.condition));
                for condition in conditions {
                    assert!(
                        !condition.contains("snow"),
                        "{} got {condition} with seed {seed}",
                        city.name
                    );
                }
                let highland = LOCAL_QUIRKS
                    .iter()
                    .any(|(name, elevation, _)| *name == city.name && *elevation > 500.0);
                let warm = report.current.temperature_c > 15.0;
                assert!(highland || warm, "{}: {:?}", city.name, report.current);
            }
        }
    }

    #[test]
    fn deserts_stay_dry_and_mountains_stay_cool() {
        for seed in 0..50 {
            let riyadh = report(seed, find_city("Riyadh").expect("known city"));
            assert_eq!(
                riyadh.current.precipitation_mm, 0.0,
                "seed {seed}: {:?}",
                riyadh.current
            );
            let quito = report(seed, find_city("Quito").expect("known city"));
            let singapore = report(seed, find_city("Singapore").expect("known city"));
            assert!(
                quito.current.temperature_c < singapore.current.temperature_c,
                "seed {seed}"
            );
        }
        for (name, _, _) in LOCAL_QUIRKS {
            assert!(
                find_city(name).is_some_and(|city| city.name == *name),
                "{name} is not in the table"
            );
        }
    }

    #[test]
    fn missing_and_unknown_cities_are_errors() {
        assert_eq!(
            answer(1, &Params::new())
                .map(|_| ())
                .map_err(|error| error.status.as_u16()),
            Err(400)
        );
        assert_eq!(
            answer(1, &params("  "))
                .map(|_| ())
                .map_err(|error| error.status.as_u16()),
            Err(400)
        );
        assert_eq!(
            answer(1, &params("Atlantis"))
                .map(|_| ())
                .map_err(|error| error.code),
            Err("unknown_city")
        );
    }
}
