"""The cities the simulated weather service knows, and how a question names one.

A copy of the simulator's gazetteer (crates/tributary-sim/src/cities.rs: names and aliases), so that this peer
plans the weather request exactly as tributary's planner does: the city is found in the question case-, accent-
and punctuation-insensitively, the longest name wins ("New York" over "York"), ties go to the earliest mention,
and the request names the city as the gazetteer spells it (`/weather?city=São Paulo`).
"""

import unicodedata

CITY_NAMES = (
    "Tokyo", "Osaka", "Kyoto", "Sapporo", "Delhi", "Mumbai", "Kolkata", "Chennai", "Bengaluru", "Hyderabad",
    "Shanghai", "Beijing", "Hong Kong", "Shenzhen", "Guangzhou", "Chengdu", "Taipei", "Seoul", "Busan",
    "Ulaanbaatar", "Dhaka", "Karachi", "Lahore", "Islamabad", "Kathmandu", "Colombo", "Bangkok", "Hanoi",
    "Ho Chi Minh City", "Phnom Penh", "Yangon", "Kuala Lumpur", "Singapore", "Jakarta", "Manila", "Tashkent",
    "Almaty", "Tbilisi", "Yerevan", "Tehran", "Baghdad", "Riyadh", "Jeddah", "Dubai", "Abu Dhabi", "Doha", "Muscat",
    "Amman", "Beirut", "Tel Aviv", "Istanbul", "Cairo", "Casablanca", "Marrakesh", "Tunis", "Algiers", "Khartoum",
    "Addis Ababa", "Nairobi", "Kampala", "Kigali", "Dar es Salaam", "Lagos", "Accra", "Dakar", "Kinshasa", "Luanda",
    "Harare", "Johannesburg", "Cape Town", "Antananarivo", "Moscow", "Kyiv", "Warsaw", "Kraków", "Prague", "Vienna",
    "Budapest", "Bucharest", "Athens", "Rome", "Milan", "Naples", "Madrid", "Barcelona", "Seville", "Lisbon",
    "Paris", "Lyon", "Marseille", "Brussels", "Amsterdam", "Berlin", "Hamburg", "Munich", "Cologne", "Zürich",
    "London", "Manchester", "Edinburgh", "Dublin", "Copenhagen", "Stockholm", "Oslo", "Tromsø", "Helsinki",
    "Reykjavík", "Nuuk", "New York", "Boston", "Washington", "Chicago", "Houston", "New Orleans", "Miami", "Denver",
    "Las Vegas", "Los Angeles", "San Francisco", "Seattle", "Anchorage", "Honolulu", "Toronto", "Montréal",
    "Ottawa", "Calgary", "Vancouver", "Mexico City", "Guadalajara", "Havana", "Bogotá", "Medellín", "Caracas",
    "Quito", "Lima", "La Paz", "Santiago", "Buenos Aires", "Montevideo", "São Paulo", "Rio de Janeiro", "Brasília",
    "Salvador", "Sydney", "Melbourne", "Brisbane", "Perth", "Auckland", "Wellington",
)

ALIASES = {
    "NYC": "New York",
    "New York City": "New York",
    "Washington DC": "Washington",
    "Washington D.C.": "Washington",
    "Bombay": "Mumbai",
    "Calcutta": "Kolkata",
    "Madras": "Chennai",
    "Bangalore": "Bengaluru",
    "New Delhi": "Delhi",
    "Saigon": "Ho Chi Minh City",
    "Peking": "Beijing",
    "Kiev": "Kyiv",
    "Köln": "Cologne",
    "München": "Munich",
    "Lisboa": "Lisbon",
    "Roma": "Rome",
    "Praha": "Prague",
    "Wien": "Vienna",
    "Sevilla": "Seville",
    "Milano": "Milan",
    "Napoli": "Naples",
    "Marrakech": "Marrakesh",
    "Rangoon": "Yangon",
    "Cracow": "Kraków",
}

# Letters that Unicode decomposition does not reduce to ASCII, spelled as the simulator's fold() spells them.
_SPECIAL_LETTERS = {"æ": "ae", "œ": "oe", "ß": "ss", "þ": "th", "ð": "d", "đ": "d", "ł": "l", "ø": "o", "ı": "i"}


def fold(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents stripped, apostrophes joining, other
    punctuation separating, as the simulator folds names before matching."""
    words = []
    current = []
    for character in text.lower():
        plain = _SPECIAL_LETTERS.get(character)
        if plain is None:
            decomposed = unicodedata.normalize("NFKD", character)
            plain = "".join(part for part in decomposed if part.isascii() and part.isalnum())
        if plain:
            current.append(plain)
        elif character not in "'’":
            if current:
                words.append("".join(current))
                current = []
    if current:
        words.append("".join(current))
    return " ".join(words)


def _build_index() -> list[tuple[tuple[str, ...], str]]:
    """Every folded name and alias as a word tuple, with the gazetteer spelling it stands for."""
    index = [(tuple(fold(name).split()), name) for name in CITY_NAMES]
    index.extend((tuple(fold(alias).split()), name) for alias, name in ALIASES.items())
    return index


_INDEX = _build_index()


def city_named_in(question: str) -> str | None:
    """The gazetteer name of the city the question names, or None when it names none."""
    words = fold(question).split()
    best = None  # (folded name length, position, city)
    for name_words, city in _INDEX:
        width = len(name_words)
        position = next(
            (start for start in range(len(words) - width + 1) if tuple(words[start:start + width]) == name_words),
            None,
        )
        if position is None:
            continue
        length = len(" ".join(name_words))
        if best is None or length > best[0] or (length == best[0] and position < best[1]):
            best = (length, position, city)
    return best[2] if best else None
