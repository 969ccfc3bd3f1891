"""Plausible names, companies, addresses and phone numbers drawn from one random stream.

Kept apart from the deal model so the model reads as the sales process it simulates;
every value here is only descriptive and carries no signal the analytics look for.
"""

from __future__ import annotations

import functools
import itertools
import random
import re

from .wordlists import (
    COMPANY_SECOND_WORDS,
    COMPANY_WORDS,
    COUNTRIES,
    DEFAULT_NOUNS,
    FIRST_NAMES,
    INDUSTRY_NOUNS,
    LAST_NAMES,
    STREET_NAMES,
    STREET_TYPES,
)

_SLUG = re.compile(r"[^a-z0-9]+")
_POSTCODE_LETTERS = "ABCEGHJKLMNPRSTVXY"


def slug(text: str) -> str:
    """Lower-case letters and digits only: e-mail local parts, domains, aliases."""
    return _SLUG.sub("", text.lower())


@functools.lru_cache(maxsize=64)
def cumulative(weights: tuple[float, ...]) -> list[float]:
    """Cumulative weights for `random.choices` (cached: the same tuples recur a lot)."""
    return list(itertools.accumulate(weights))


class Fakes:
    """Descriptive values; every draw comes from `rng`, so a seed fixes them all."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used_names: set[str] = set()

    def weighted(self, options: tuple[tuple[str, float], ...]) -> str:
        return self.rng.choices(options, cum_weights=cumulative(tuple(w for _, w in options)))[0][0]

    def person(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def company_name(self, industry: str, country: str, *, unique: bool) -> str:
        nouns = INDUSTRY_NOUNS.get(industry, DEFAULT_NOUNS)
        legal = COUNTRIES[country][1]
        for attempt in range(40):
            if self.rng.random() < 0.2:
                base = f"{self.rng.choice(LAST_NAMES)} {self.rng.choice(nouns)}"
            else:
                second = self.rng.choice(COMPANY_SECOND_WORDS)
                first = self.rng.choice(COMPANY_WORDS)
                base = f"{first}{second.lower()}" if second and self.rng.random() < 0.5 else (
                    f"{first} {second}".strip())
                base = f"{base} {self.rng.choice(nouns)}"
            suffix = self.rng.choice(legal)
            name = f"{base} {suffix}".strip() if suffix else base
            if attempt >= 30:
                name = f"{name} {attempt - 28}"
            if not unique or name not in self.used_names:
                self.used_names.add(name)
                return name
        raise RuntimeError("ran out of company names")

    def address(self, country: str) -> dict[str, str | None]:
        """street, city, state, postal_code and country, written as that country does."""
        regions = COUNTRIES[country][4]
        state, cities = self.rng.choice(regions)
        city = self.rng.choice(cities)
        number = self.rng.randint(1, 9999)
        street_name = self.rng.choice(STREET_NAMES)
        if country == "Germany":
            street = f"{street_name}straße {number % 200 + 1}"
        elif country == "France":
            street = f"{number % 200 + 1} Rue {street_name}"
        elif country == "Netherlands":
            street = f"{street_name}straat {number % 300 + 1}"
        elif country == "Japan":
            street = f"{number % 9 + 1}-{number % 20 + 1}-{number % 30 + 1} Marunouchi"
        elif country == "Brazil":
            street = f"Avenida {street_name}, {number}"
        else:
            street = f"{number} {street_name} {self.rng.choice(STREET_TYPES)}"
            if self.rng.random() < 0.2:
                street += f"\nSuite {self.rng.randint(100, 2400)}"
        return {"street": street, "city": city, "state": state,
                "postal_code": self.postal_code(country), "country": country}

    def postal_code(self, country: str) -> str:
        r = self.rng
        letters = _POSTCODE_LETTERS
        if country == "Canada":
            return (f"{r.choice(letters)}{r.randint(0, 9)}{r.choice(letters)} "
                    f"{r.randint(0, 9)}{r.choice(letters)}{r.randint(0, 9)}")
        if country == "United Kingdom":
            return f"{r.choice(('EC', 'SW', 'M', 'B', 'LS', 'EH', 'G'))}{r.randint(1, 20)} " \
                   f"{r.randint(1, 9)}{r.choice(letters)}{r.choice(letters)}"
        if country == "Netherlands":
            return f"{r.randint(1000, 9999)} {r.choice(letters)}{r.choice(letters)}"
        if country == "Japan":
            return f"{r.randint(100, 999)}-{r.randint(0, 9999):04d}"
        if country == "Brazil":
            return f"{r.randint(10000, 99999)}-{r.randint(0, 999):03d}"
        if country == "Australia":
            return str(r.randint(2000, 4999))
        if country == "Singapore":
            return f"{r.randint(10000, 829999):06d}"
        return f"{r.randint(1000, 99999):05d}"

    def phone(self, country: str) -> str:
        r = self.rng
        if country in ("United States", "Canada"):
            return f"({r.randint(201, 989)}) 555-{r.randint(0, 9999):04d}"
        prefix = COUNTRIES[country][3]
        return f"{prefix} {r.randint(10, 99)} {r.randint(1000, 9999)} {r.randint(1000, 9999)}"

    @staticmethod
    def domain(company: str, country: str) -> str:
        words = [w for w in company.split() if slug(w)][:2]
        return "".join(slug(w) for w in words) + COUNTRIES[country][2]
