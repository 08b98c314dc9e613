//! The news service: a corpus of articles generated from the seed, and an in-memory BM25 index over it.
//!
//! Articles are built from topic templates (titles, summaries and a bank of body sentences full of the topic's
//! content words) filled with a city, its country, an outlet and numbers. Ranking is Okapi BM25 over the title
//! (counted twice, as a boost), the summary and the body.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::cities::{City, cities, fold};
use super::error::ApiError;
use super::fault::Params;
use super::seed::rng_for;

/// Articles in the corpus.
pub(crate) const CORPUS_SIZE: usize = 600;
/// Articles per page of results.
pub(crate) const PER_PAGE: usize = 10;
/// BM25 term-frequency saturation.
const K1: f64 = 1.2;
/// BM25 length normalisation.
const B: f64 = 0.75;
/// Body sentences per article.
const SENTENCES_PER_BODY: usize = 4;
/// 2026-01-01T00:00:00Z: articles are published over the following 120 days.
const CORPUS_START_UNIX: u64 = 1_767_225_600;
const CORPUS_SPAN_MINUTES: i64 = 120 * 24 * 60;

/// One generated article.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Article {
    id: String,
    title: String,
    summary: String,
    body: String,
    published_at: String,
    outlet: &'static str,
    city: &'static str,
    country: &'static str,
    topic: &'static str,
}

/// An article in a result page, with its score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ScoredArticle {
    #[serde(flatten)]
    article: Article,
    score: f64,
}

/// The body of `GET /news`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct NewsPage {
    query: String,
    page: usize,
    per_page: usize,
    total: usize,
    articles: Vec<ScoredArticle>,
}

/// The corpus and its inverted index. Built once at start-up; read-only afterwards.
#[derive(Debug)]
pub(crate) struct NewsIndex {
    articles: Vec<Article>,
    /// term -> (article position, term frequency), in article order.
    postings: HashMap<String, Vec<(usize, u32)>>,
    /// Indexed length (in terms) of each article.
    lengths: Vec<u32>,
    average_length: f64,
}

impl NewsIndex {
    /// Generates the corpus for `seed` and indexes it. Pure CPU work (a few milliseconds): call it off the runtime.
    pub(crate) fn build(seed: u64) -> Self {
        let articles = generate(seed, CORPUS_SIZE);
        let mut postings: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(articles.len());
        for (position, article) in articles.iter().enumerate() {
            let text = format!(
                "{0} {0} {1} {2}",
                article.title, article.summary, article.body
            );
            let terms = terms(&text);
            lengths.push(
                u32::try_from(terms.len()).expect("an article has far fewer than 4 billion terms"),
            );
            let mut frequencies: HashMap<String, u32> = HashMap::new();
            for term in terms {
                *frequencies.entry(term).or_default() += 1;
            }
            for (term, frequency) in frequencies {
                postings
                    .entry(term)
                    .or_default()
                    .push((position, frequency));
            }
        }
        let average_length = lengths.iter().map(|&length| f64::from(length)).sum::<f64>()
            / lengths.len().max(1) as f64;
        NewsIndex {
            articles,
            postings,
            lengths,
            average_length,
        }
    }

    /// Every matching article position with its BM25 score, best first (ties: corpus order).
    fn search(&self, query: &str) -> Vec<(usize, f64)> {
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        let documents = self.articles.len() as f64;
        let mut scores: HashMap<usize, f64> = HashMap::new();
        for term in &query_terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let document_frequency = postings.len() as f64;
            let idf =
                (1.0 + (documents - document_frequency + 0.5) / (document_frequency + 0.5)).ln();
            for &(position, frequency) in postings {
                let frequency = f64::from(frequency);
                let length_ratio = f64::from(self.lengths[position]) / self.average_length;
                let saturation =
                    frequency * (K1 + 1.0) / (frequency + K1 * (1.0 - B + B * length_ratio));
                *scores.entry(position).or_default() += idf * saturation;
            }
        }
        let mut ranked: Vec<(usize, f64)> = scores.into_iter().collect();
        ranked.sort_by(|left, right| right.1.total_cmp(&left.1).then(left.0.cmp(&right.0)));
        ranked
    }

    #[cfg(test)]
    fn articles(&self) -> &[Article] {
        &self.articles
    }
}

/// Answers `GET /news?q=QUERY[&page=N]`.
pub(crate) fn answer(index: &NewsIndex, params: &Params) -> Result<NewsPage, ApiError> {
    let query = params
        .get("q")
        .map(|query| query.trim())
        .filter(|query| !query.is_empty());
    let query = query.ok_or_else(|| ApiError::missing_parameter("q"))?;
    let page = match params.get("page") {
        None => 1,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&page| page >= 1)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`page` must be a whole number from 1, got {text:?}"
                ))
            })?,
    };
    let ranked = index.search(query);
    let articles = ranked
        .iter()
        .skip((page - 1).saturating_mul(PER_PAGE))
        .take(PER_PAGE)
        .map(|&(position, score)| ScoredArticle {
            article: index.articles[position].clone(),
            score: (score * 10_000.0).round() / 10_000.0,
        })
        .collect();
    Ok(NewsPage {
        query: query.to_owned(),
        page,
        per_page: PER_PAGE,
        total: ranked.len(),
        articles,
    })
}

/// Index terms: folded words, minus stop words, with plurals reduced ("prices" and "price" match).
pub(crate) fn terms(text: &str) -> Vec<String> {
    fold(text)
        .split(' ')
        .filter(|word| !word.is_empty() && !is_stop_word(word))
        .map(stem)
        .collect()
}

fn stem(word: &str) -> String {
    if word.len() > 4 && word.ends_with("ies") {
        format!("{}y", &word[..word.len() - 3])
    } else if word.len() > 3
        && word.ends_with('s')
        && !word.ends_with("ss")
        && !word.ends_with("us")
    {
        word[..word.len() - 1].to_owned()
    } else {
        word.to_owned()
    }
}

const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "but", "by", "can", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "more", "my", "new", "no",
    "not", "of", "on", "or", "our", "over", "s", "said", "she", "so", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "up", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "why", "will", "with", "would", "you",
];

/// Words too common to say anything about a document (shared with the knowledge base's query builder).
pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// A subject of the news, with templates full of its content words.
struct Topic {
    name: &'static str,
    titles: &'static [&'static str],
    summaries: &'static [&'static str],
    sentences: &'static [&'static str],
}

const OUTLETS: &[&str] = &[
    "The Meridian Post",
    "Harbour Daily",
    "Northern Ledger",
    "The Civic Courier",
    "Global Wire Service",
    "The Evening Standard Bearer",
    "Coastline Times",
    "The Plainspeaker",
    "Continental Review",
    "The Morning Signal",
];

fn generate(seed: u64, count: usize) -> Vec<Article> {
    let mut rng = rng_for(seed, "news/corpus");
    let cities = cities();
    (0..count)
        .map(|number| {
            let topic = &TOPICS[number % TOPICS.len()];
            let city = &cities[rng.random_range(0..cities.len())];
            let outlet = OUTLETS[rng.random_range(0..OUTLETS.len())];
            let fill = |template: &str| fill_template(template, city, outlet, seed);
            let title = fill(topic.titles[rng.random_range(0..topic.titles.len())]);
            let summary = fill(topic.summaries[rng.random_range(0..topic.summaries.len())]);
            let mut sentences: Vec<&str> = topic.sentences.to_vec();
            sentences.shuffle(&mut rng);
            let body: Vec<String> = sentences
                .iter()
                .take(SENTENCES_PER_BODY)
                .map(|sentence| fill(sentence))
                .collect();
            let minutes = rng.random_range(0..CORPUS_SPAN_MINUTES);
            Article {
                id: format!("news-{number:04}"),
                title,
                summary,
                body: body.join(" "),
                published_at: rfc3339(CORPUS_START_UNIX + minutes.unsigned_abs() * 60),
                outlet,
                city: city.name,
                country: city.country,
                topic: topic.name,
            }
        })
        .collect()
}

/// Replaces `{city}`, `{country}`, `{outlet}` and the numbers: `{n}` (2 to 95), `{m}` (120 to 980), `{p}` (1 to 9,
/// for rates such as inflation), `{q}` (5 to 60) and `{t}` (38 to 49, a record temperature).
///
/// The numbers are drawn from a stream of their own for each template and the place it names (its city, its
/// country, or none): every article that states a fact states the same figure, so an answer built from two articles cannot say that food prices in Paris
/// rose by 15 percent and by 55 percent.
fn fill_template(template: &str, city: &City, outlet: &str, seed: u64) -> String {
    // A fact that names no city is its country's; one that names no place at all ("The city opened 23 new
    // schools") reads the same wherever it is told, so it has one figure everywhere.
    let place = if template.contains("{city}") {
        city.name
    } else if template.contains("{country}") {
        city.country
    } else {
        ""
    };
    let mut numbers = rng_for(seed, &format!("news/fact/{place}/{template}"));
    let mut text = template
        .replace("{city}", city.name)
        .replace("{country}", city.country)
        .replace("{outlet}", outlet);
    for (placeholder, range) in [
        ("{n}", 2..=95),
        ("{m}", 120..=980),
        ("{p}", 1..=9),
        ("{q}", 5..=60),
        ("{t}", 38..=49),
    ] {
        while text.contains(placeholder) {
            let number: u32 = numbers.random_range(range.clone());
            text = text.replacen(placeholder, &number.to_string(), 1);
        }
    }
    text
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
fn rfc3339(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "energy",
        titles: &[
            "{city} switches on its largest solar farm",
            "Wind power overtakes gas in {country}'s grid",
            "{city} bets on battery storage to steady the power grid",
            "Electricity prices fall in {city} as renewables surge",
        ],
        summaries: &[
            "A new solar and battery project near {city} will supply {m} megawatts of renewable electricity.",
            "Grid operators in {country} report record output from wind turbines and solar panels.",
        ],
        sentences: &[
            "The solar farm outside {city} covers {n} hectares and feeds {m} megawatts into the national grid.",
            "Engineers say battery storage lets the grid shift midday solar power into the evening peak.",
            "Wind turbines supplied {n} percent of the electricity used in {country} last month.",
            "Critics warn that transmission lines have not kept pace with new renewable energy projects.",
            "Household electricity bills in {city} fell by {p} percent after the new capacity came online.",
            "The utility plans to retire two coal power stations once the storage batteries are proven.",
            "Analysts at {outlet} note that gas plants now run mostly as backup on windless nights.",
        ],
    },
    Topic {
        name: "transport",
        titles: &[
            "{city} opens a new metro line after years of delays",
            "Commuters in {city} face rail strike over pay",
            "{city} expands bicycle lanes and cuts car traffic",
            "Electric buses take over {city}'s busiest routes",
        ],
        summaries: &[
            "The new metro line in {city} adds {n} stations and is expected to carry {m} thousand passengers a day.",
            "Transport officials in {city} say traffic congestion fell after the public transit upgrade.",
        ],
        sentences: &[
            "The metro line links the airport to the city centre of {city} in under {n} minutes.",
            "Rail unions in {country} called the strike after talks on wages and rosters collapsed.",
            "Traffic congestion on the main ring road fell by {q} percent after the bicycle lanes opened.",
            "The city bought {m} electric buses and installed chargers at every depot.",
            "Passengers complained about crowded trains and signal failures during the morning rush hour.",
            "Planners in {city} hope cheaper public transport tickets will keep commuters out of their cars.",
            "The transit authority says ridership has recovered to {p} percent above its earlier record.",
        ],
    },
    Topic {
        name: "health",
        titles: &[
            "Hospitals in {city} prepare for a severe flu season",
            "{country} launches a national vaccination campaign",
            "Nurses in {city} warn of staff shortages in emergency wards",
            "New clinic in {city} cuts waiting times for patients",
        ],
        summaries: &[
            "Doctors in {city} urge residents to get vaccinated as influenza cases climb.",
            "Health officials in {country} say hospital waiting lists are finally shrinking.",
        ],
        sentences: &[
            "Hospital admissions for influenza in {city} rose by {n} percent in a single week.",
            "The vaccination campaign aims to reach {m} thousand elderly residents before winter.",
            "Nurses say emergency wards are short of staff and beds on most nights.",
            "The new clinic offers same-day appointments with general practitioners and nurses.",
            "Public health experts recommend masks in crowded clinics during the flu season.",
            "The health ministry of {country} promised funding for {n} new hospital wards.",
            "Doctors interviewed by {outlet} said patient waiting times dropped to {n} days.",
        ],
    },
    Topic {
        name: "technology",
        titles: &[
            "{city} startup raises funds for AI chips",
            "A new data centre near {city} strains the power supply",
            "Semiconductor factory brings jobs to {city}",
            "{country} tightens rules on artificial intelligence software",
        ],
        summaries: &[
            "A technology startup in {city} designs chips that run machine learning models with less energy.",
            "Software engineers and regulators in {country} debate how to govern artificial intelligence.",
        ],
        sentences: &[
            "The startup says its AI accelerator chips run large language models at a fraction of the power.",
            "Investors put {m} million dollars into the company's latest funding round.",
            "The data centre will use {n} megawatts of electricity, as much as a small town.",
            "The semiconductor factory in {city} will employ {m} engineers and technicians.",
            "Regulators in {country} want software companies to explain how their algorithms make decisions.",
            "Cloud computing demand keeps rising as companies move their servers out of offices.",
            "Programmers in {city} told {outlet} that hiring for machine learning jobs has doubled.",
        ],
    },
    Topic {
        name: "climate",
        titles: &[
            "Heatwave breaks temperature records in {city}",
            "Floods cut roads and power around {city}",
            "Drought forces water restrictions in {country}",
            "{city} unveils a plan to cut carbon emissions",
        ],
        summaries: &[
            "Extreme heat in {city} pushed temperatures to record highs and strained hospitals.",
            "Heavy rain and flooding near {city} forced hundreds of families to leave their homes.",
        ],
        sentences: &[
            "Temperatures in {city} reached {t} degrees, the highest since records began.",
            "Flood water cut off {n} villages and closed the main highway for two days.",
            "The drought has left reservoirs in {country} at {n} percent of capacity.",
            "The climate plan commits {city} to cutting carbon emissions in half within a decade.",
            "Scientists link the more frequent heatwaves to global warming from greenhouse gases.",
            "Firefighters contained a wildfire that burned {m} hectares of forest.",
            "Climate researchers quoted by {outlet} called for better early warning systems.",
        ],
    },
    Topic {
        name: "housing",
        titles: &[
            "Rents in {city} climb for the fifth year",
            "{city} approves thousands of new apartments",
            "Mortgage rates squeeze first-time buyers in {country}",
            "Tenants in {city} protest against evictions",
        ],
        summaries: &[
            "Housing costs in {city} keep rising as construction lags behind demand for apartments.",
            "Buyers in {country} face higher mortgage payments as lenders raise interest rates.",
        ],
        sentences: &[
            "Average rent for a two-bedroom apartment in {city} rose by {p} percent this year.",
            "The council approved {m} new apartments, a third of them reserved as affordable housing.",
            "Mortgage rates in {country} have reached their highest level in {n} years.",
            "Construction firms blame the shortage of homes on slow permits and costly materials.",
            "Tenant groups in {city} demand rent controls and limits on short-term holiday lets.",
            "Estate agents told {outlet} that first-time buyers are waiting longer to purchase homes.",
        ],
    },
    Topic {
        name: "economy",
        titles: &[
            "Central bank of {country} raises interest rates again",
            "Inflation eases in {country} as fuel prices fall",
            "Exporters in {city} hit by a strong currency",
            "Unemployment in {city} falls to a record low",
        ],
        summaries: &[
            "The central bank in {country} moved to cool inflation with another increase in interest rates.",
            "Economists say consumer prices in {country} are rising more slowly than expected.",
        ],
        sentences: &[
            "The central bank raised its benchmark interest rate by {n} basis points.",
            "Annual inflation in {country} slowed to {p} percent as fuel and food prices eased.",
            "Exporters in {city} say the strong currency makes their goods expensive abroad.",
            "Unemployment in {city} fell as factories and shops hired more workers.",
            "Stock markets rallied after the inflation figures were published.",
            "Economists at {outlet} expect economic growth of about {p} tenths of a percent next quarter.",
            "Consumer spending on retail goods rose despite higher borrowing costs.",
        ],
    },
    Topic {
        name: "sport",
        titles: &[
            "{city} wins the right to host the football final",
            "New stadium opens in {city} with a sold-out match",
            "{city} marathon draws record number of runners",
            "Coach resigns after {city} club is relegated",
        ],
        summaries: &[
            "Football fans in {city} celebrate as the club reaches the league final.",
            "A record {m} runners took part in the city marathon through the streets of {city}.",
        ],
        sentences: &[
            "The new stadium in {city} seats {q} thousand spectators and has a retractable roof.",
            "The football club scored {n} goals in its last ten league matches.",
            "Marathon runners crossed the finish line in front of cheering crowds.",
            "The coach resigned after the team was relegated from the top league.",
            "Ticket prices for the final sold out within {n} minutes.",
            "Sports commentators at {outlet} praised the young striker's speed and vision.",
        ],
    },
    Topic {
        name: "science",
        titles: &[
            "Telescope near {city} spots a distant planet",
            "{country} launches its first weather satellite",
            "University in {city} unveils a quantum computing lab",
            "Researchers in {city} map ocean currents with robots",
        ],
        summaries: &[
            "Astronomers using a telescope in {country} report a new planet orbiting a nearby star.",
            "Scientists in {city} say their research could improve weather forecasts and climate models.",
        ],
        sentences: &[
            "Astronomers detected the planet by measuring tiny dips in the star's light.",
            "The satellite will send weather images to forecasters every {n} minutes.",
            "The university's quantum computing lab holds a processor with {n} qubits.",
            "Ocean robots collected temperature data from depths of {m} metres.",
            "The research was published in a peer-reviewed science journal this week.",
            "Scientists in {city} told {outlet} that the space programme has trained {m} engineers.",
        ],
    },
    Topic {
        name: "agriculture",
        titles: &[
            "Farmers near {city} expect a record wheat harvest",
            "Coffee prices jump after poor harvest in {country}",
            "{country} invests in irrigation for drought-hit farms",
            "Food prices in {city} rise as crops fail",
        ],
        summaries: &[
            "Farmers in {country} report a strong harvest thanks to good rains and better seeds.",
            "Poor weather hit crops in {country}, pushing up food prices in markets.",
        ],
        sentences: &[
            "The wheat harvest around {city} is expected to reach {m} thousand tonnes.",
            "Coffee growers lost {n} percent of their crop to drought and plant disease.",
            "Irrigation canals will bring water to {m} farms in dry regions of {country}.",
            "Food prices at markets in {city} rose by {p} percent in a month.",
            "Agricultural scientists are breeding rice and maize that tolerate heat.",
            "Farm unions told {outlet} that fertiliser costs are squeezing small farmers.",
        ],
    },
    Topic {
        name: "culture",
        titles: &[
            "Film festival in {city} opens with a local premiere",
            "{city} museum reopens after renovation",
            "Open-air concert draws crowds in {city}",
            "Artists from {country} headline a new exhibition",
        ],
        summaries: &[
            "The film festival in {city} will screen {m} films from around the world.",
            "A renovated museum in {city} displays art and history collections to the public again.",
        ],
        sentences: &[
            "The festival screens films from {n} countries, with a prize for the best first feature.",
            "The museum spent {n} million on new galleries, lighting and climate control for its paintings.",
            "The open-air concert in {city} featured an orchestra and a choir of {m} singers.",
            "Critics at {outlet} praised the exhibition of contemporary art and photography.",
            "Tickets for the museum are free for students and residents of {city} on Sundays.",
            "Musicians and actors from {country} joined the festival's closing ceremony.",
        ],
    },
    Topic {
        name: "education",
        titles: &[
            "Teachers in {city} strike over pay and class sizes",
            "{country} reforms school exams",
            "{city} university offers free tuition to local students",
            "New schools open across {city}",
        ],
        summaries: &[
            "Schools in {city} closed as teachers walked out over wages and crowded classrooms.",
            "Education officials in {country} announced changes to exams and the school curriculum.",
        ],
        sentences: &[
            "Teachers in {city} say class sizes have grown to {n} pupils.",
            "The exam reform replaces some written tests with coursework and projects.",
            "The university will offer scholarships and free tuition to {m} students.",
            "The city opened {n} new primary schools with science labs and libraries.",
            "Parents told {outlet} that school closures make it hard to keep working.",
            "Education researchers say smaller classes improve reading and mathematics results.",
        ],
    },
    Topic {
        name: "tourism",
        titles: &[
            "Tourists return to {city} in record numbers",
            "{city} airport adds new international flights",
            "Hotels in {city} struggle with staff shortages",
            "{city} introduces a tourist tax",
        ],
        summaries: &[
            "Visitors are flocking back to {city}, filling hotels and restaurants.",
            "Airlines are adding flights to {city} as international travel recovers.",
        ],
        sentences: &[
            "The airport in {city} handled {m} thousand passengers last month.",
            "Hotel occupancy in {city} reached {n} percent during the holiday season.",
            "Airlines announced {n} new international routes to {country}.",
            "The tourist tax adds a small fee to every hotel night in {city}.",
            "Residents complain that crowds of tourists push up rents in the old town.",
            "Travel agents told {outlet} that bookings to {country} have doubled.",
        ],
    },
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn query(index: &NewsIndex, q: &str, page: Option<&str>) -> NewsPage {
        let mut params = Params::from([("q".to_owned(), q.to_owned())]);
        if let Some(page) = page {
            params.insert("page".to_owned(), page.to_owned());
        }
        answer(index, &params).expect("a valid query")
    }

    #[test]
    fn the_corpus_is_big_deterministic_and_seeded() {
        let index = NewsIndex::build(1);
        assert!(index.articles().len() >= 500);
        assert_eq!(index.articles(), NewsIndex::build(1).articles());
        assert_ne!(index.articles(), NewsIndex::build(2).articles());
        assert!(
            index
                .articles()
                .iter()
                .all(|article| article.body.split(' ').count() >= 30)
        );
    }

    /// Two articles once gave two figures for one fact ("rose by 15 percent ... rose by 55 percent"), and some
    /// figures were absurd ("seats 942 hundred spectators", inflation at 88 percent).
    #[test]
    fn a_fact_about_a_city_has_one_figure_in_every_article() {
        let index = NewsIndex::build(1);
        let mut figures: HashMap<String, BTreeSet<String>> = HashMap::new();
        for article in index.articles() {
            for sentence in article.body.split(". ") {
                let shape: String = sentence
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect();
                figures
                    .entry(shape)
                    .or_default()
                    .insert(sentence.to_owned());
            }
            assert!(
                !article.body.contains("hundred spectators"),
                "{}",
                article.body
            );
        }
        for (shape, stated) in &figures {
            assert_eq!(stated.len(), 1, "{shape}: {stated:?}");
        }
    }

    #[test]
    fn a_topic_query_ranks_that_topic_first() {
        let index = NewsIndex::build(1);
        let page = query(&index, "solar power grid", None);
        assert!(page.total > PER_PAGE);
        assert!(
            page.articles
                .iter()
                .all(|scored| scored.article.topic == "energy"),
            "{:#?}",
            page.articles
        );
        let scores: Vec<f64> = page.articles.iter().map(|scored| scored.score).collect();
        assert!(
            scores.windows(2).all(|pair| pair[0] >= pair[1]),
            "{scores:?}"
        );
    }

    #[test]
    fn pages_partition_the_results() {
        let index = NewsIndex::build(1);
        let first = query(&index, "hospital", None);
        let second = query(&index, "hospital", Some("2"));
        assert_eq!(first.total, second.total);
        assert!(first.total > 2 * PER_PAGE, "{}", first.total);
        assert_eq!(first.articles.len(), PER_PAGE);
        let ids: Vec<&str> = first
            .articles
            .iter()
            .chain(&second.articles)
            .map(|a| a.article.id.as_str())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(query(&index, "hospital", Some("1000")).articles.is_empty());
        assert_eq!(query(&index, "zzzz qqqq", None).total, 0);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let index = NewsIndex::build(1);
        for params in [
            Params::new(),
            Params::from([("q".to_owned(), " ".to_owned())]),
            Params::from([
                ("q".to_owned(), "rain".to_owned()),
                ("page".to_owned(), "0".to_owned()),
            ]),
            Params::from([
                ("q".to_owned(), "rain".to_owned()),
                ("page".to_owned(), "two".to_owned()),
            ]),
        ] {
            assert_eq!(
                answer(&index, &params)
                    .map_err(|error| error.status.as_u16())
                    .err(),
                Some(400),
                "{params:?}"
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(CORPUS_START_UNIX), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn plurals_match_singulars() {
        assert_eq!(terms("The prices of batteries"), ["price", "battery"]);
    }
}
