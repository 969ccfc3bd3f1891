"""Deterministic, realistic seed data with a known win-probability model.

`seed(sandbox, n_opportunities, seed)` fills an empty org with users, a
product catalogue and price books, accounts, contacts, leads, opportunities
and line items, inserted straight into the store in one transaction.

Determinism: everything is drawn from `random.Random(seed)`, and all times
are offsets from an *anchor* instant (default: the start of the current UTC
day), so the same seed and anchor give byte-identical records, ids included.
Nothing is later than the anchor, so nothing is in the future.

Signal: a closed deal is won with probability
`1 / (1 + exp(a_s + b_s * price_ratio))` where `price_ratio` is what the
customer pays relative to list (`sum(TotalPrice) / sum(Quantity * ListPrice)`)
and `s` is the segment (industry x company-size band); b_s > 0, so discounts
win deals, more so in price-sensitive segments. Sellers differ in how much
they discount. The true parameters are stored and served at `/_sandbox/truth`.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .activity_seed import build_activities
from .schema import STAGES
from .values import parse_datetime
from .wordlists import (
    COMPANY_SECOND_WORDS,
    COMPANY_WORDS,
    CONTACT_TITLES,
    COUNTRIES,
    DEFAULT_NOUNS,
    EDITIONS,
    FIRST_NAMES,
    INDUSTRY_NOUNS,
    LAST_NAMES,
    NEXT_STEPS,
    PRODUCT_CATALOG,
    STREET_NAMES,
    STREET_TYPES,
)

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

DAY = 86400.0
USER_DOMAIN = "sandbox.accrue.local"
INDUSTRY_WEIGHTS: dict[str, float] = {
    "Technology": 16, "Finance": 6, "Banking": 5, "Insurance": 5, "Healthcare": 10,
    "Biotechnology": 4, "Manufacturing": 12, "Retail": 8, "Education": 4, "Energy": 4,
    "Media": 4, "Telecommunications": 5, "Transportation": 5, "Consulting": 6,
    "Hospitality": 3, "Government": 3,
}
# band → (min employees, max employees, share of accounts, opportunity weight)
SIZE_BANDS: dict[str, tuple[int, int, float, float]] = {
    "SMB": (10, 199, 0.55, 1.0),
    "MM": (200, 1999, 0.30, 2.0),
    "ENT": (2000, 120000, 0.15, 3.5),
}
# band → (price sensitivity b before the industry factor, intercept shift)
BAND_MODEL: dict[str, tuple[float, float]] = {"SMB": (10.0, -0.15), "MM": (8.0, 0.0),
                                              "ENT": (6.0, 0.25)}
TARGET_WIN_RATE = 0.38
TYPICAL_PRICE_RATIO = 0.87
OPEN_SHARE = 0.25
OPEN_STAGES = (("Prospecting", 0.25, 0.15), ("Qualification", 0.22, 0.30),
               ("Needs Analysis", 0.20, 0.45), ("Proposal/Price Quote", 0.18, 0.65),
               ("Negotiation/Review", 0.15, 0.80))
OPEN_STAGE_WEIGHTS = tuple(itertools.accumulate(share for _, share, _ in OPEN_STAGES))
LEAD_SOURCE_WEIGHTS = (("Web", 0.35), ("Phone Inquiry", 0.15), ("Partner Referral", 0.2),
                       ("Purchased List", 0.15), ("Other", 0.15))

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class SeedSummary:
    """What `seed` produced, for logs and benchmarks."""

    counts: dict[str, int]
    seconds: float
    win_rate: float


@functools.lru_cache(maxsize=8192)
def _day_text(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86400))


def _ts(seconds: float) -> str:
    """REST datetime text; a hot path (over a million calls per 100k deals)."""
    millis_total = int(seconds * 1000)
    day_number, millis = divmod(millis_total, 86_400_000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{_day_text(day_number)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}+0000"


def _day(seconds: float) -> str:
    return _day_text(int(seconds // 86400))


@functools.lru_cache(maxsize=64)
def _cumulative(weights: tuple[float, ...]) -> list[float]:
    return list(itertools.accumulate(weights))


def _slug(text: str) -> str:
    return _SLUG.sub("", text.lower())


class _Builder:
    """Builds every record in memory; ids are assigned at the end, in creation order."""

    def __init__(self, rng: random.Random, anchor: float, n: int, admin_id: str,
                 org_epoch: float) -> None:
        self.rng = rng
        self.anchor = anchor
        self.anchor_day = anchor - anchor % DAY
        self.n = n
        self.org_epoch = org_epoch
        self.admin: dict[str, Any] = {"Id": admin_id}
        self.records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.used_names: set[str] = set()
        self.used_usernames: set[str] = set()
        countries = list(COUNTRIES.items())
        self.countries = [name for name, _ in countries]
        self.country_weights = _cumulative(tuple(spec[0] for _, spec in countries))
        self.industries = list(INDUSTRY_WEIGHTS)
        self.industry_weights = _cumulative(tuple(INDUSTRY_WEIGHTS.values()))
        self.segments: dict[str, dict[str, Any]] = {}

    # -- small helpers -------------------------------------------------------

    def business_time(self, day_start: float) -> float:
        """A working-hours instant on the given UTC day."""
        return day_start + self.rng.uniform(8 * 3600, 18.5 * 3600)

    def before_anchor(self, seconds: float) -> float:
        return min(seconds, self.anchor - 1.0)

    def between(self, low: float, high: float) -> float:
        high = self.before_anchor(high)
        return low if high <= low else self.rng.uniform(low, high)

    def audit(self, record: dict[str, Any], created: float, modified: float,
              creator: dict[str, Any], modifier: dict[str, Any] | None = None, *,
              deletable: bool = True, system_touch: bool = True) -> None:
        """Set the audit fields; a few records get a later system-only modstamp."""
        created = self.before_anchor(created)
        modified = max(created, self.before_anchor(modified))
        stamp = modified
        if system_touch and self.rng.random() < 0.04:
            stamp = self.before_anchor(modified + self.rng.uniform(3600, 30 * DAY))
        record["CreatedDate"] = _ts(created)
        record["LastModifiedDate"] = _ts(modified)
        record["SystemModstamp"] = _ts(stamp)
        record["_refs"]["CreatedById"] = creator
        record["_refs"]["LastModifiedById"] = modifier or creator
        if deletable:
            record["IsDeleted"] = False

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

    def address(self, country: str) -> dict[str, Any]:
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
        return {"BillingStreet": street, "BillingCity": city, "BillingState": state,
                "BillingPostalCode": self.postal_code(country), "BillingCountry": country,
                "BillingLatitude": None, "BillingLongitude": None,
                "BillingGeocodeAccuracy": None}

    def postal_code(self, country: str) -> str:
        r = self.rng
        letters = "ABCEGHJKLMNPRSTVXY"
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

    def domain(self, company: str, country: str) -> str:
        words = [w for w in company.split() if _slug(w)][:2]
        return "".join(_slug(w) for w in words) + COUNTRIES[country][2]

    def weighted(self, options: tuple[tuple[str, float], ...]) -> str:
        cumulative = _cumulative(tuple(w for _, w in options))
        return self.rng.choices(options, cum_weights=cumulative)[0][0]

    # -- users ---------------------------------------------------------------

    def user(self, title: str, created: float, manager: dict[str, Any] | None,
             active: bool = True) -> dict[str, Any]:
        first, last = self.person()
        base = f"{_slug(first)}.{_slug(last)}"
        username, suffix = f"{base}@{USER_DOMAIN}", 2
        while username in self.used_usernames:
            username, suffix = f"{base}{suffix}@{USER_DOMAIN}", suffix + 1
        self.used_usernames.add(username)
        record: dict[str, Any] = {
            "_refs": {"ManagerId": manager}, "Username": username, "LastName": last,
            "FirstName": first, "Name": f"{first} {last}",
            "Alias": (first[0] + _slug(last))[:8].lower(), "Email": username, "Title": title,
            "Department": "Sales", "IsActive": active, "UserType": "Standard",
        }
        self.audit(record, created, self.between(created, self.anchor), self.admin,
                   deletable=False)
        self.records["User"].append(record)
        return record

    def build_users(self) -> list[dict[str, Any]]:
        n_sellers = min(60, max(3, round(self.n / 150)))
        n_managers = math.ceil(n_sellers / 6)
        earliest = self.org_epoch + DAY
        managers = []
        for _ in range(n_managers):
            created = max(earliest, self.anchor - self.rng.uniform(1300, 1500) * DAY)
            managers.append(self.user("Regional Sales Manager", created, None))
        sellers = []
        for index in range(n_sellers):
            created = max(earliest, self.anchor - self.rng.uniform(1100, 1300) * DAY)
            title = self.rng.choice(("Account Executive", "Account Executive",
                                     "Senior Account Executive"))
            seller = self.user(title, created, managers[index // 6],
                               active=self.rng.random() > 0.08)
            seller["_habit"] = round(self.rng.uniform(0.02, 0.18), 4)
            sellers.append(seller)
        return sellers

    # -- catalogue -----------------------------------------------------------

    def build_catalog(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Products with their standard (and partner) price book entries."""
        families = ["Platform"] + self.rng.sample(
            [f for f in PRODUCT_CATALOG if f != "Platform"], self.rng.randint(3, 5))
        n_products = self.rng.randint(20, 60)
        first_created = max(self.org_epoch + DAY, self.anchor - 1500 * DAY)
        standard: dict[str, Any] = {"_refs": {}, "Name": "Standard Price Book",
                                    "IsActive": True, "IsStandard": True,
                                    "Description": "Company list prices"}
        self.audit(standard, first_created, first_created, self.admin, system_touch=False)
        partner: dict[str, Any] = {"_refs": {}, "Name": "Partner Price Book", "IsActive": True,
                                   "IsStandard": False,
                                   "Description": "Reseller prices (15% off list)"}
        self.audit(partner, first_created + 30 * DAY, first_created + 30 * DAY, self.admin,
                   system_touch=False)
        self.records["Pricebook2"] += [standard, partner]
        combos = [(family, item, edition) for edition in EDITIONS
                  for family in families for item in PRODUCT_CATALOG[family][3]]
        products = []
        for index, (family, item, (edition, factor)) in enumerate(combos[:n_products]):
            code, (low, high), _, _ = PRODUCT_CATALOG[family]
            step = 50 if family in ("Professional Services", "Support") else 10
            price = round(self.rng.uniform(low, high) * factor / step) * step
            created = first_created + self.rng.uniform(1, 200) * DAY
            product: dict[str, Any] = {
                "_refs": {}, "Name": f"Accrue {item} - {edition}",
                "ProductCode": f"{code}-{edition[:3].upper()}-{index + 1:03d}",
                "Description": f"{item} ({family}, {edition} edition)",
                "IsActive": self.rng.random() > 0.1, "Family": family,
                "Unit_Cost__c": round(price * self.rng.uniform(0.40, 0.70), 2),
                "_list_price": float(price),
            }
            self.audit(product, created, self.between(created, created + 400 * DAY),
                       self.admin)
            products.append(product)
            for book, share in ((standard, 1.0), (partner, 0.85)):
                entry: dict[str, Any] = {
                    "_refs": {"Pricebook2Id": book, "Product2Id": product},
                    "Name": product["Name"], "UnitPrice": round(price * share, 2),
                    "IsActive": product["IsActive"], "UseStandardPrice": False,
                    "ProductCode": product["ProductCode"],
                }
                entry_created = created + 3600 + (30 * DAY if book is partner else 0)
                self.audit(entry, entry_created, entry_created, self.admin, system_touch=False)
                self.records["PricebookEntry"].append(entry)
                if book is standard:
                    product["_entry"] = entry
        self.records["Product2"] += products
        return products, standard

    # -- accounts, opportunities, line items ---------------------------------

    def build_segments(self) -> None:
        logit = math.log((1 - TARGET_WIN_RATE) / TARGET_WIN_RATE)
        for industry in self.industries:
            shift = self.rng.uniform(-0.5, 0.5)
            sensitivity = self.rng.uniform(0.8, 1.25)
            for band, (base_b, band_shift) in BAND_MODEL.items():
                b = round(base_b * sensitivity, 4)
                a = round(logit - b * TYPICAL_PRICE_RATIO + shift + band_shift, 4)
                self.segments[f"{industry}|{band}"] = {
                    "industry": industry, "size_band": band, "a": a, "b": b,
                    "closed": 0, "won": 0,
                }

    def build_accounts(self, sellers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        n_accounts = max(5, round(self.n / 5))
        bands = list(SIZE_BANDS)
        band_weights = [SIZE_BANDS[b][2] for b in bands]
        active = [s for s in sellers if s["IsActive"]] or sellers
        accounts = []
        for _ in range(n_accounts):
            industry = self.rng.choices(self.industries, cum_weights=self.industry_weights)[0]
            country = self.rng.choices(self.countries, cum_weights=self.country_weights)[0]
            band = self.rng.choices(bands, weights=band_weights)[0]
            low, high = SIZE_BANDS[band][:2]
            employees = int(math.exp(self.rng.uniform(math.log(low), math.log(high))))
            revenue = None
            if self.rng.random() > 0.1:
                revenue = float(round(employees * self.rng.uniform(80_000, 350_000), -3))
            name = self.company_name(industry, country, unique=True)
            account: dict[str, Any] = {
                "_refs": {"OwnerId": self.rng.choice(active), "ParentId": None},
                "Name": name, "Type": None, **self.address(country),
                "Phone": self.phone(country),
                "Website": f"www.{self.domain(name, country)}", "Industry": industry,
                "AnnualRevenue": revenue, "NumberOfEmployees": employees, "Description": None,
                "Revenue_Per_Employee__c": round(revenue / employees, 2) if revenue else None,
                "_band": band, "_country": country, "_opps": [], "_contacts": [],
            }
            accounts.append(account)
        self.records["Account"] += accounts
        return accounts

    def build_opportunities(self, accounts: list[dict[str, Any]], sellers: list[dict[str, Any]],
                            products: list[dict[str, Any]],
                            pricebook: dict[str, Any]) -> list[dict[str, Any]]:
        rng = self.rng
        account_weights = [SIZE_BANDS[a["_band"]][3] for a in accounts]
        chosen_accounts = rng.choices(accounts, weights=account_weights, k=self.n)
        active_products = [p for p in products if p["IsActive"]] or products
        platform = [p for p in products if p["Family"] == "Platform"]
        active_platform = [p for p in active_products if p["Family"] == "Platform"]
        opportunities = []
        for account in chosen_accounts:
            is_open = rng.random() < OPEN_SHARE
            owner = account["_refs"]["OwnerId"] if rng.random() < 0.85 else rng.choice(sellers)
            pool, firsts = (active_products, active_platform) if is_open else (
                products, platform)
            n_lines = rng.choices((1, 2, 3), cum_weights=(0.4, 0.75, 1.0))[0]
            first = rng.choice(firsts) if firsts and rng.random() < 0.6 else rng.choice(pool)
            picked = [first]
            while len(picked) < n_lines:
                candidate = rng.choice(pool)
                if candidate not in picked:
                    picked.append(candidate)
            band = account["_band"]
            quantities = []
            for product in picked:
                low, high = PRODUCT_CATALOG[product["Family"]][2][band]
                quantities.append(rng.randint(low, high))
            list_total = sum(q * p["_list_price"] for q, p in zip(quantities, picked, strict=True))
            deal_discount = owner["_habit"] + 0.03 * math.log10(
                max(list_total, 1000.0) / 20000) + rng.gauss(0, 0.035)
            deal_discount = min(0.40, max(0.0, deal_discount))
            lines = []
            for quantity, product in zip(quantities, picked, strict=True):
                discount = min(0.45, max(0.0, deal_discount + rng.gauss(0, 0.015)))
                discount = round(discount * 200) / 200
                unit = round(product["_list_price"] * (1 - discount), 2)
                lines.append({
                    "_refs": {"Product2Id": product, "PricebookEntryId": product["_entry"]},
                    "Quantity": float(quantity), "UnitPrice": unit,
                    "ListPrice": product["_list_price"], "Discount": None,
                    "TotalPrice": round(quantity * unit, 2), "Description": None,
                })
            amount = round(sum(line["TotalPrice"] for line in lines), 2)
            ratio = sum(line["TotalPrice"] for line in lines) / list_total
            segment = self.segments[f"{account['Industry']}|{band}"]
            p_win = 1.0 / (1.0 + math.exp(segment["a"] + segment["b"] * ratio))
            cycle = max(3.0, (12 + 16 * math.log(1 + amount / 8000)) * rng.lognormvariate(0, 0.3))
            if is_open:
                stage, _, progress = OPEN_STAGES[rng.choices(
                    range(len(OPEN_STAGES)), cum_weights=OPEN_STAGE_WEIGHTS)[0]]
                age_days = max(1, math.ceil(cycle * progress * rng.uniform(0.6, 1.4)))
                created = self.business_time(self.anchor_day - age_days * DAY)
                close_day = created - created % DAY + round(cycle) * DAY
                if close_day <= self.anchor_day:
                    close_day = self.anchor_day + rng.randint(3, 45) * DAY
                modified = self.between(created, self.anchor)
                won = False
            else:
                won = rng.random() < p_win
                stage = "Closed Won" if won else "Closed Lost"
                close_day = self.anchor_day - (int(730 * rng.random() ** 1.25) + 1) * DAY
                created = self.business_time(close_day - max(3, round(cycle)) * DAY)
                modified = self.business_time(close_day + rng.randint(0, 2) * DAY)
                segment["closed"] += 1
                segment["won"] += int(won)
            probability, closed, is_won, forecast = STAGES[stage]
            source = self.weighted(LEAD_SOURCE_WEIGHTS) if rng.random() < 0.85 else None
            opportunity: dict[str, Any] = {
                "_refs": {"AccountId": account, "OwnerId": owner, "Pricebook2Id": pricebook},
                "Name": None, "Description": None, "StageName": stage, "Amount": amount,
                "Probability": probability,
                "ExpectedRevenue": round(amount * probability / 100, 2),
                "CloseDate": _day(close_day), "Type": None,
                "NextStep": rng.choice(NEXT_STEPS) if is_open else None, "LeadSource": source,
                "IsClosed": closed, "IsWon": is_won, "ForecastCategory": forecast,
                "HasOpportunityLineItem": True,
                "_created": created, "_family": first["Family"], "_close": close_day,
                "_ratio": ratio, "_p_win": p_win, "_segment": segment,
            }
            self.audit(opportunity, created, modified, owner)
            line_ceiling = parse_datetime(opportunity["LastModifiedDate"]).timestamp()
            for line in lines:
                line_created = min(created + rng.uniform(600, max(900, 0.3 * cycle * DAY)),
                                   line_ceiling)
                line["_refs"]["OpportunityId"] = opportunity
                line["ServiceDate"] = opportunity["CloseDate"] if rng.random() < 0.5 else None
                self.audit(line, line_created, self.between(line_created, line_ceiling), owner,
                           system_touch=False)
            self.records["OpportunityLineItem"] += lines
            account["_opps"].append(opportunity)
            opportunities.append(opportunity)
        self.records["Opportunity"] += opportunities
        return opportunities

    def finish_accounts(self, accounts: list[dict[str, Any]]) -> None:
        """Creation dates, types and names that depend on the account's deals."""
        rng = self.rng
        kinds = (("Existing Customer - Upgrade", 0.6), ("Existing Customer - Replacement", 0.3),
                 ("Existing Customer - Downgrade", 0.1))
        labels = {"New Business": "New Business", "Existing Customer - Upgrade": "Expansion",
                  "Existing Customer - Replacement": "Renewal",
                  "Existing Customer - Downgrade": "Renewal (Reduced)"}
        for account in accounts:
            opps = sorted(account["_opps"], key=lambda o: o["_created"])
            owner = account["_refs"]["OwnerId"]
            if opps:
                created = opps[0]["_created"] - rng.uniform(2, 90) * DAY
            else:
                created = self.business_time(self.anchor_day - rng.uniform(1, 1000) * DAY)
            won = [o for o in opps if o["IsWon"]]
            if won:
                account["Type"] = "Customer - Channel" if rng.random() < 0.15 else (
                    "Customer - Direct")
            elif opps:
                account["Type"] = "Prospect"
            else:
                account["Type"] = self.weighted((("Prospect", 0.7),
                                                 ("Channel Partner / Reseller", 0.1),
                                                 ("Technology Partner", 0.1), ("Other", 0.1)))
            floor = max([created] + [o["_close"] + 9 * 3600 for o in won])
            self.audit(account, created, self.between(floor, self.anchor), owner)
            short = account["Name"].split(" ")[0] if len(account["Name"]) > 30 else account["Name"]
            for index, opportunity in enumerate(opps):
                kind = "New Business" if index == 0 else self.weighted(kinds)
                opportunity["Type"] = kind
                quarter = (int(opportunity["CloseDate"][5:7]) - 1) // 3 + 1
                opportunity["Name"] = (f"{short} - {opportunity['_family']} {labels[kind]} "
                                       f"Q{quarter} {opportunity['CloseDate'][:4]}")
        enterprises = [a for a in accounts if a["_band"] == "ENT"]
        for account in accounts:
            if enterprises and account["_band"] != "ENT" and rng.random() < 0.04:
                parent = rng.choice(enterprises)
                if parent["CreatedDate"] < account["CreatedDate"]:
                    account["_refs"]["ParentId"] = parent

    def build_contacts(self, accounts: list[dict[str, Any]]) -> None:
        rng = self.rng
        for account in accounts:
            created_floor = parse_datetime(account["CreatedDate"]).timestamp()
            domain = account["Website"][4:]
            for _ in range(rng.choices((1, 2, 3), cum_weights=(0.3, 0.7, 1.0))[0]):
                first, last = self.person()
                title, department = rng.choice(CONTACT_TITLES)
                contact: dict[str, Any] = {
                    "_refs": {"AccountId": account, "OwnerId": account["_refs"]["OwnerId"]},
                    "LastName": last, "FirstName": first, "Name": f"{first} {last}",
                    "Title": title, "Department": department,
                    "Email": f"{_slug(first)}.{_slug(last)}@{domain}",
                    "Phone": self.phone(account["_country"]),
                    "LeadSource": self.weighted(LEAD_SOURCE_WEIGHTS) if rng.random() < 0.6
                    else None,
                }
                created = self.between(created_floor, created_floor + 200 * DAY)
                self.audit(contact, created, self.between(created, self.anchor),
                           account["_refs"]["OwnerId"])
                account["_contacts"].append(contact)
                self.records["Contact"].append(contact)

    def build_leads(self, opportunities: list[dict[str, Any]], sellers: list[dict[str, Any]]
                    ) -> None:
        rng = self.rng
        n_leads = round(self.n / 2)
        candidates = [o for o in opportunities
                      if o["Type"] == "New Business" and o["LeadSource"] is not None]
        converted = rng.sample(candidates, min(round(0.25 * n_leads), len(candidates)))
        converted.sort(key=lambda o: o["_created"])
        active = [s for s in sellers if s["IsActive"]] or sellers
        for opportunity in converted:
            account = opportunity["_refs"]["AccountId"]
            contact = rng.choice(account["_contacts"])
            converted_at = opportunity["_created"]
            created = converted_at - rng.uniform(1, 45) * DAY
            lead: dict[str, Any] = {
                "_refs": {"OwnerId": opportunity["_refs"]["OwnerId"],
                          "ConvertedAccountId": account, "ConvertedContactId": contact,
                          "ConvertedOpportunityId": opportunity},
                "LastName": contact["LastName"], "FirstName": contact["FirstName"],
                "Name": contact["Name"], "Title": contact["Title"], "Company": account["Name"],
                "Email": contact["Email"], "Phone": contact["Phone"],
                "Status": "Closed - Converted", "LeadSource": opportunity["LeadSource"],
                "Industry": account["Industry"], "Rating": rng.choice(("Hot", "Warm")),
                "AnnualRevenue": account["AnnualRevenue"],
                "NumberOfEmployees": account["NumberOfEmployees"],
                "Country": account["_country"], "IsConverted": True,
                "ConvertedDate": _day(converted_at),
            }
            self.audit(lead, created, converted_at, self.admin,
                       opportunity["_refs"]["OwnerId"])
            self.records["Lead"].append(lead)
        statuses = (("Open - Not Contacted", 0.3), ("Working - Contacted", 0.3),
                    ("Closed - Not Converted", 0.4))
        for _ in range(n_leads - len(converted)):
            industry = rng.choices(self.industries, cum_weights=self.industry_weights)[0]
            country = rng.choices(self.countries, cum_weights=self.country_weights)[0]
            company = self.company_name(industry, country, unique=False)
            first, last = self.person()
            title, _ = rng.choice(CONTACT_TITLES)
            created = self.business_time(self.anchor_day - rng.uniform(0, 730) * DAY)
            status = self.weighted(statuses)
            if status != "Closed - Not Converted" and self.anchor - created > 120 * DAY and (
                rng.random() < 0.6
            ):
                status = "Closed - Not Converted"
            owner = rng.choice(active) if rng.random() < 0.9 else self.admin
            employees = int(math.exp(rng.uniform(math.log(5), math.log(20000))))
            lead = {
                "_refs": {"OwnerId": owner, "ConvertedAccountId": None,
                          "ConvertedContactId": None, "ConvertedOpportunityId": None},
                "LastName": last, "FirstName": first, "Name": f"{first} {last}",
                "Title": title, "Company": company,
                "Email": f"{_slug(first)}.{_slug(last)}@{self.domain(company, country)}",
                "Phone": self.phone(country), "Status": status,
                "LeadSource": self.weighted(LEAD_SOURCE_WEIGHTS), "Industry": industry,
                "Rating": rng.choice(("Hot", "Warm", "Cold", None)),
                "AnnualRevenue": float(round(employees * rng.uniform(60_000, 300_000), -3)),
                "NumberOfEmployees": employees, "Country": country, "IsConverted": False,
                "ConvertedDate": None,
            }
            creator = self.admin if rng.random() < 0.5 else owner
            self.audit(lead, created, self.between(created, self.anchor), creator, owner)
            self.records["Lead"].append(lead)


def _finalise(records: list[dict[str, Any]], ids: list[str]) -> None:
    for record, record_id in zip(records, ids, strict=True):
        record["Id"] = record_id


def seed(sandbox: SalesforceSandbox, n_opportunities: int, seed: int = 42, *,
         anchor: datetime | None = None) -> SeedSummary:
    """Fill an empty sandbox; same (seed, anchor) → identical data and ids."""
    from .sandbox import ORG_EPOCH

    if n_opportunities < 0:
        raise ValueError("n_opportunities must be >= 0")
    if not sandbox.is_empty():
        raise RuntimeError("the sandbox already has data; seed only an empty state file")
    now = sandbox.now()
    if anchor is None:
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
    anchor = anchor.astimezone(UTC) if anchor.tzinfo else anchor.replace(tzinfo=UTC)
    if anchor > now:
        raise ValueError("the anchor must not be in the future")
    started = time.perf_counter()
    builder = _Builder(random.Random(seed), anchor.timestamp(), n_opportunities,
                       sandbox.admin_user_id, parse_datetime(ORG_EPOCH).timestamp())
    builder.build_segments()
    sellers = builder.build_users()
    products, standard = builder.build_catalog()
    accounts = builder.build_accounts(sellers)
    opportunities = builder.build_opportunities(accounts, sellers, products, standard)
    builder.finish_accounts(accounts)
    builder.build_contacts(accounts)
    builder.build_leads(opportunities, sellers)
    # Their own random stream: the records above are the same with or without them.
    tasks, events = build_activities(random.Random(f"activities/{seed}"), builder.anchor,
                                     opportunities, _ts, _day)
    builder.records["Task"] += tasks
    builder.records["Event"] += events

    counts: dict[str, int] = {}
    order = ("User", "Product2", "Pricebook2", "PricebookEntry", "Account", "Contact", "Lead",
             "Opportunity", "OpportunityLineItem", "Task", "Event")
    with sandbox.store.write() as conn:
        for name in order:
            items = builder.records[name]
            items.sort(key=lambda r: r["CreatedDate"])  # stable: ties keep build order
            obj = sandbox.schema.require(name)
            _finalise(items, sandbox.store.allocate_ids(conn, obj.key_prefix, len(items)))
        for name in order:
            clean = []
            for record in builder.records[name]:
                row = {k: v for k, v in record.items() if k[0] != "_"}
                for field_name, target in record["_refs"].items():
                    row[field_name] = None if target is None else target["Id"]
                clean.append(row)
            obj = sandbox.schema.require(name)
            sandbox.store.drop_indexes(conn, obj)
            counts[name] = sandbox.store.insert_many(conn, obj, clean)
            sandbox.store.create_indexes(conn, obj)
        sandbox.store.analyze(conn)
        truth = _truth(builder, sellers, opportunities, seed, anchor, n_opportunities)
        sandbox.set_truth(conn, truth)
    return SeedSummary(counts, time.perf_counter() - started, truth["realized"]["win_rate"])


def _truth(builder: _Builder, sellers: list[dict[str, Any]],
           opportunities: list[dict[str, Any]], seed: int, anchor: datetime,
           n_opportunities: int) -> dict[str, Any]:
    closed = [o for o in opportunities if o["IsClosed"]]
    ordered = sorted(closed, key=lambda o: o["_ratio"])
    quartiles = []
    for q in range(4):
        part = ordered[q * len(ordered) // 4:(q + 1) * len(ordered) // 4]
        if part:
            quartiles.append({
                "price_ratio_min": round(part[0]["_ratio"], 4),
                "price_ratio_max": round(part[-1]["_ratio"], 4),
                "win_rate": round(sum(o["IsWon"] for o in part) / len(part), 4),
                "deals": len(part),
            })
    wins = sum(o["IsWon"] for o in closed)
    return {
        "generator": "accrue-salesforce-sandbox/1",
        "seed": seed,
        "anchor": anchor.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "n_opportunities": n_opportunities,
        "model": {
            "formula": "P(win) = 1 / (1 + exp(a + b * price_ratio))",
            "price_ratio": "sum(TotalPrice) / sum(Quantity * ListPrice) over the opportunity's "
                           "line items",
            "segment": "Account.Industry | size band of Account.NumberOfEmployees",
            "size_bands": {band: {"min_employees": low, "max_employees": high}
                           for band, (low, high, _, _) in SIZE_BANDS.items()},
            "open_share": OPEN_SHARE,
        },
        "segments": {
            key: {"industry": s["industry"], "size_band": s["size_band"], "a": s["a"],
                  "b": s["b"], "closed_deals": s["closed"],
                  "win_rate": round(s["won"] / s["closed"], 4) if s["closed"] else None}
            for key, s in builder.segments.items()
        },
        "sellers": [{"id": s["Id"], "name": s["Name"], "discount_habit": s["_habit"]}
                    for s in sellers],
        "realized": {
            "closed_deals": len(closed),
            "won_deals": wins,
            "win_rate": round(wins / len(closed), 4) if closed else 0.0,
            "win_rate_by_price_ratio_quartile": quartiles,
        },
    }
