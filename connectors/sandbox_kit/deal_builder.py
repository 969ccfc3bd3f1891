"""Builds the deal model's records in memory (see `deal_model` for what it simulates).

Records are `Draft`s holding floats (seconds since the epoch) and references to other
drafts; `deal_model.build_world` sorts them, names them and freezes them. Floats keep the
hot path cheap: a 100k-deal world is over half a million records.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from typing import Any

from .fakes import Fakes, cumulative, slug
from .wordlists import CONTACT_TITLES, COUNTRIES, EDITIONS, NEXT_STEPS, PRODUCT_CATALOG

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
# open stage → (share of open deals, how far through its cycle a deal in it is)
OPEN_STAGES = (("Prospecting", 0.25, 0.15), ("Qualification", 0.22, 0.30),
               ("Needs Analysis", 0.20, 0.45), ("Proposal/Price Quote", 0.18, 0.65),
               ("Negotiation/Review", 0.15, 0.80))
OPEN_STAGE_WEIGHTS = tuple(itertools.accumulate(share for _, share, _ in OPEN_STAGES))
# stage → (probability %, closed, won, forecast category): the sales process every CRM shows
STAGES: dict[str, tuple[int, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "BestCase"),
    "Negotiation/Review": (90, False, False, "Commit"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
LEAD_SOURCE_WEIGHTS = (("Web", 0.35), ("Phone Inquiry", 0.15), ("Partner Referral", 0.2),
                       ("Purchased List", 0.15), ("Other", 0.15))
# Why an account has more deals: the label in the deal's name, by opportunity type.
_KIND_LABELS = {"New Business": "New Business", "Existing Customer - Upgrade": "Expansion",
                "Existing Customer - Replacement": "Renewal",
                "Existing Customer - Downgrade": "Renewal (Reduced)"}
_LATER_KINDS = (("Existing Customer - Upgrade", 0.6), ("Existing Customer - Replacement", 0.3),
                ("Existing Customer - Downgrade", 0.1))


class Draft:
    """One record while the world is built; `refs` name other drafts, `scratch` is private."""

    __slots__ = ("created", "creator", "extra", "fields", "modified", "modifier", "object",
                 "refs", "scratch")

    def __init__(self, object_name: str, fields: dict[str, Any], extra: dict[str, Any],
                 refs: dict[str, Draft | None]) -> None:
        self.object = object_name
        self.fields = fields
        self.extra = extra
        self.refs = refs
        self.scratch: dict[str, Any] = {}
        self.created = self.modified = 0.0
        self.creator: Draft | None = None
        self.modifier: Draft | None = None


def millis(seconds: float) -> float:
    """Times are whole milliseconds, the finest grain CRMs keep."""
    return math.floor(seconds * 1000) / 1000


class Builder:
    """Builds every record of the world; ids are given later, in creation order."""

    def __init__(self, rng: random.Random, anchor: float, n: int, org_epoch: float) -> None:
        self.rng = rng
        self.fake = Fakes(rng)
        self.anchor = anchor
        self.anchor_day = anchor - anchor % DAY
        self.n = n
        self.org_epoch = org_epoch
        self.records: dict[str, list[Draft]] = {}
        self.used_usernames: set[str] = set()
        self.countries = list(COUNTRIES)
        self.country_weights = cumulative(tuple(spec[0] for spec in COUNTRIES.values()))
        self.industries = list(INDUSTRY_WEIGHTS)
        self.industry_weights = cumulative(tuple(INDUSTRY_WEIGHTS.values()))
        self.segments: dict[str, dict[str, Any]] = {}
        self.admin = self.new("user", {
            "name": "Integration User", "email": f"admin@{USER_DOMAIN}",
            "title": "Integration User", "department": "IT", "is_active": True},
            {"first_name": "Integration", "last_name": "User", "username": f"admin@{USER_DOMAIN}",
             "role": "integration"}, {"manager_id": None})
        start = min(org_epoch, anchor - 1.0)
        self.stamp(self.admin, start, start, self.admin)

    # -- small helpers -------------------------------------------------------

    def new(self, object_name: str, fields: dict[str, Any], extra: dict[str, Any],
            refs: dict[str, Draft | None]) -> Draft:
        draft = Draft(object_name, fields, extra, refs)
        self.records.setdefault(object_name, []).append(draft)
        return draft

    def business_time(self, day_start: float) -> float:
        """A working-hours instant on the given UTC day."""
        return day_start + self.rng.uniform(8 * 3600, 18.5 * 3600)

    def before_anchor(self, seconds: float) -> float:
        return min(seconds, self.anchor - 1.0)

    def between(self, low: float, high: float) -> float:
        high = self.before_anchor(high)
        return low if high <= low else self.rng.uniform(low, high)

    def stamp(self, draft: Draft, created: float, modified: float, creator: Draft,
              modifier: Draft | None = None) -> None:
        """Creation and last change, never after the anchor, in whole milliseconds."""
        draft.created = millis(self.before_anchor(created))
        draft.modified = max(draft.created, millis(self.before_anchor(modified)))
        draft.creator = creator
        draft.modifier = modifier or creator

    # -- users ---------------------------------------------------------------

    def user(self, title: str, created: float, manager: Draft | None, role: str,
             active: bool = True) -> Draft:
        first, last = self.fake.person()
        base = f"{slug(first)}.{slug(last)}"
        username, suffix = f"{base}@{USER_DOMAIN}", 2
        while username in self.used_usernames:
            username, suffix = f"{base}{suffix}@{USER_DOMAIN}", suffix + 1
        self.used_usernames.add(username)
        record = self.new("user", {"name": f"{first} {last}", "email": username, "title": title,
                                   "department": "Sales", "is_active": active},
                          {"first_name": first, "last_name": last, "username": username,
                           "role": role}, {"manager_id": manager})
        self.stamp(record, created, self.between(created, self.anchor), self.admin)
        return record

    def build_users(self) -> list[Draft]:
        n_sellers = min(60, max(3, round(self.n / 150)))
        n_managers = math.ceil(n_sellers / 6)
        earliest = self.org_epoch + DAY
        managers = []
        for _ in range(n_managers):
            created = max(earliest, self.anchor - self.rng.uniform(1300, 1500) * DAY)
            managers.append(self.user("Regional Sales Manager", created, None, "manager"))
        sellers = []
        for index in range(n_sellers):
            created = max(earliest, self.anchor - self.rng.uniform(1100, 1300) * DAY)
            title = self.rng.choice(("Account Executive", "Account Executive",
                                     "Senior Account Executive"))
            seller = self.user(title, created, managers[index // 6], "seller",
                               active=self.rng.random() > 0.08)
            seller.extra["discount_habit"] = round(self.rng.uniform(0.02, 0.18), 4)
            sellers.append(seller)
        return sellers

    # -- catalogue -----------------------------------------------------------

    def price_book(self, name: str, standard: bool, description: str, share: float,
                   created: float) -> Draft:
        book = self.new("price_book", {"name": name, "is_standard": standard,
                                       "is_active": True, "description": description},
                        {"list_price_share": share}, {})
        self.stamp(book, created, created, self.admin)
        return book

    def standard_price_book(self) -> Draft:
        """What every org has, deals or not."""
        first_created = max(self.org_epoch + DAY, self.anchor - 1500 * DAY)
        return self.price_book("Standard Price Book", True, "Company list prices", 1.0,
                               first_created)

    def build_catalog(self, standard: Draft) -> list[Draft]:
        """Products with their standard (and partner) price book entries."""
        families = ["Platform"] + self.rng.sample(
            [f for f in PRODUCT_CATALOG if f != "Platform"], self.rng.randint(3, 5))
        n_products = self.rng.randint(20, 60)
        first_created = standard.created
        partner = self.price_book("Partner Price Book", False, "Reseller prices (15% off list)",
                                  0.85, first_created + 30 * DAY)
        combos = [(family, item, edition) for edition in EDITIONS
                  for family in families for item in PRODUCT_CATALOG[family][3]]
        products = []
        for index, (family, item, (edition, factor)) in enumerate(combos[:n_products]):
            code, (low, high), _, _ = PRODUCT_CATALOG[family]
            step = 50 if family in ("Professional Services", "Support") else 10
            price = round(self.rng.uniform(low, high) * factor / step) * step
            created = first_created + self.rng.uniform(1, 200) * DAY
            product = self.new("product", {
                "name": f"Accrue {item} - {edition}",
                "product_code": f"{code}-{edition[:3].upper()}-{index + 1:03d}",
                "family": family, "is_active": self.rng.random() > 0.1,
                "unit_cost": round(price * self.rng.uniform(0.40, 0.70), 2),
            }, {"description": f"{item} ({family}, {edition} edition)",
                "list_price": float(price)}, {})
            self.stamp(product, created, self.between(created, created + 400 * DAY), self.admin)
            products.append(product)
            for book in (standard, partner):
                share = book.extra["list_price_share"]
                entry = self.new("price_book_entry", {
                    "unit_price": round(price * share, 2),
                    "is_active": product.fields["is_active"], "currency": "USD",
                }, {"name": product.fields["name"],
                    "product_code": product.fields["product_code"]},
                    {"price_book_id": book, "product_id": product})
                entry_created = created + 3600 + (30 * DAY if book is partner else 0)
                self.stamp(entry, entry_created, entry_created, self.admin)
                if book is standard:
                    product.scratch["entry"] = entry
        return products

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

    def build_accounts(self, sellers: list[Draft]) -> list[Draft]:
        n_accounts = max(5, round(self.n / 5))
        bands = list(SIZE_BANDS)
        band_weights = [SIZE_BANDS[b][2] for b in bands]
        active = [s for s in sellers if s.fields["is_active"]] or sellers
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
            name = self.fake.company_name(industry, country, unique=True)
            owner = self.rng.choice(active)
            address = self.fake.address(country)
            account = self.new("account", {
                "name": name, "industry": industry, "employee_count": employees,
                "annual_revenue": revenue, "billing_country": country,
                "billing_state": address["state"],
                "website": f"www.{self.fake.domain(name, country)}", "account_type": None,
            }, {"street": address["street"], "city": address["city"],
                "postal_code": address["postal_code"], "phone": self.fake.phone(country),
                "description": None, "size_band": band},
                {"owner_id": owner, "parent_id": None})
            account.scratch.update(opps=[], contacts=[])
            accounts.append(account)
        return accounts

    def build_opportunities(self, accounts: list[Draft], sellers: list[Draft],
                            products: list[Draft], pricebook: Draft) -> list[Draft]:
        rng = self.rng
        account_weights = [SIZE_BANDS[a.extra["size_band"]][3] for a in accounts]
        chosen_accounts = rng.choices(accounts, weights=account_weights, k=self.n)
        active_products = [p for p in products if p.fields["is_active"]] or products
        platform = [p for p in products if p.fields["family"] == "Platform"]
        active_platform = [p for p in active_products if p.fields["family"] == "Platform"]
        opportunities = []
        for account in chosen_accounts:
            is_open = rng.random() < OPEN_SHARE
            owner = account.refs["owner_id"] if rng.random() < 0.85 else rng.choice(sellers)
            assert owner is not None
            pool, firsts = (active_products, active_platform) if is_open else (
                products, platform)
            n_lines = rng.choices((1, 2, 3), cum_weights=(0.4, 0.75, 1.0))[0]
            first = rng.choice(firsts) if firsts and rng.random() < 0.6 else rng.choice(pool)
            picked = [first]
            while len(picked) < n_lines:
                candidate = rng.choice(pool)
                if candidate not in picked:
                    picked.append(candidate)
            band = account.extra["size_band"]
            quantities = []
            for product in picked:
                low, high = PRODUCT_CATALOG[product.fields["family"]][2][band]
                quantities.append(rng.randint(low, high))
            list_total = sum(q * p.extra["list_price"]
                             for q, p in zip(quantities, picked, strict=True))
            deal_discount = owner.extra["discount_habit"] + 0.03 * math.log10(
                max(list_total, 1000.0) / 20000) + rng.gauss(0, 0.035)
            deal_discount = min(0.40, max(0.0, deal_discount))
            lines = []
            for quantity, product in zip(quantities, picked, strict=True):
                discount = min(0.45, max(0.0, deal_discount + rng.gauss(0, 0.015)))
                discount = round(discount * 200) / 200
                list_price = product.extra["list_price"]
                unit = round(list_price * (1 - discount), 2)
                lines.append(self.new("opportunity_line", {
                    "quantity": float(quantity), "unit_price": unit, "list_price": list_price,
                    "discount": None, "total_price": round(quantity * unit, 2),
                }, {"discount_rate": discount, "description": None},
                    {"product_id": product, "price_book_entry_id": product.scratch["entry"],
                     "opportunity_id": None}))
            amount = round(sum(line.fields["total_price"] for line in lines), 2)
            ratio = sum(line.fields["total_price"] for line in lines) / list_total
            segment = self.segments[f"{account.fields['industry']}|{band}"]
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
            source = self.fake.weighted(LEAD_SOURCE_WEIGHTS) if rng.random() < 0.85 else None
            opportunity = self.new("opportunity", {
                "name": None, "amount": amount, "stage": stage, "is_closed": closed,
                "is_won": is_won, "close_date": close_day, "probability": float(probability),
                "opportunity_type": None, "lead_source": source,
            }, {"description": None, "next_step": rng.choice(NEXT_STEPS) if is_open else None,
                "forecast_category": forecast, "price_ratio": ratio, "p_win": p_win,
                "segment": f"{account.fields['industry']}|{band}"},
                {"account_id": account, "owner_id": owner, "price_book_id": pricebook})
            opportunity.scratch.update(created=created, family=first.fields["family"],
                                       segment=segment)
            self.stamp(opportunity, created, modified, owner)
            line_ceiling = opportunity.modified
            for line in lines:
                line_created = min(created + rng.uniform(600, max(900, 0.3 * cycle * DAY)),
                                   line_ceiling)
                line.refs["opportunity_id"] = opportunity
                line.extra["service_date"] = close_day if rng.random() < 0.5 else None
                self.stamp(line, line_created, self.between(line_created, line_ceiling), owner)
            account.scratch["opps"].append(opportunity)
            opportunities.append(opportunity)
        return opportunities

    def finish_accounts(self, accounts: list[Draft]) -> None:
        """Creation dates, types and names that depend on the account's deals."""
        rng = self.rng
        for account in accounts:
            opps = sorted(account.scratch["opps"], key=lambda o: o.scratch["created"])
            owner = account.refs["owner_id"]
            assert owner is not None
            if opps:
                created = opps[0].scratch["created"] - rng.uniform(2, 90) * DAY
            else:
                created = self.business_time(self.anchor_day - rng.uniform(1, 1000) * DAY)
            won = [o for o in opps if o.fields["is_won"]]
            if won:
                kind = "Customer - Channel" if rng.random() < 0.15 else "Customer - Direct"
            elif opps:
                kind = "Prospect"
            else:
                kind = self.fake.weighted((("Prospect", 0.7), ("Channel Partner / Reseller", 0.1),
                                           ("Technology Partner", 0.1), ("Other", 0.1)))
            account.fields["account_type"] = kind
            floor = max([created] + [o.fields["close_date"] + 9 * 3600 for o in won])
            self.stamp(account, created, self.between(floor, self.anchor), owner)
            name = account.fields["name"]
            short = name.split(" ")[0] if len(name) > 30 else name
            for index, opportunity in enumerate(opps):
                deal_kind = "New Business" if index == 0 else self.fake.weighted(_LATER_KINDS)
                opportunity.fields["opportunity_type"] = deal_kind
                close = opportunity.fields["close_date"]
                year, month = _year_month(close)
                opportunity.fields["name"] = (
                    f"{short} - {opportunity.scratch['family']} {_KIND_LABELS[deal_kind]} "
                    f"Q{(month - 1) // 3 + 1} {year}")
        enterprises = [a for a in accounts if a.extra["size_band"] == "ENT"]
        for account in accounts:
            if enterprises and account.extra["size_band"] != "ENT" and rng.random() < 0.04:
                parent = rng.choice(enterprises)
                if parent.created < account.created:
                    account.refs["parent_id"] = parent

    def build_contacts(self, accounts: list[Draft]) -> None:
        rng = self.rng
        for account in accounts:
            created_floor = account.created
            domain = account.fields["website"][4:]
            owner = account.refs["owner_id"]
            assert owner is not None
            for _ in range(rng.choices((1, 2, 3), cum_weights=(0.3, 0.7, 1.0))[0]):
                first, last = self.fake.person()
                title, department = rng.choice(CONTACT_TITLES)
                contact = self.new("contact", {
                    "first_name": first, "last_name": last,
                    "email": f"{slug(first)}.{slug(last)}@{domain}", "title": title,
                }, {"department": department, "phone": self.fake.phone(
                    account.fields["billing_country"]),
                    "lead_source": self.fake.weighted(LEAD_SOURCE_WEIGHTS)
                    if rng.random() < 0.6 else None},
                    {"account_id": account, "owner_id": owner})
                created = self.between(created_floor, created_floor + 200 * DAY)
                self.stamp(contact, created, self.between(created, self.anchor), owner)
                account.scratch["contacts"].append(contact)

    def build_leads(self, opportunities: list[Draft], sellers: list[Draft]) -> None:
        rng = self.rng
        n_leads = round(self.n / 2)
        candidates = [o for o in opportunities if o.fields["opportunity_type"] == "New Business"
                      and o.fields["lead_source"] is not None]
        converted = rng.sample(candidates, min(round(0.25 * n_leads), len(candidates)))
        converted.sort(key=lambda o: o.scratch["created"])
        active = [s for s in sellers if s.fields["is_active"]] or sellers
        for opportunity in converted:
            account = opportunity.refs["account_id"]
            owner = opportunity.refs["owner_id"]
            assert account is not None and owner is not None
            contact = rng.choice(account.scratch["contacts"])
            converted_at = opportunity.scratch["created"]
            created = converted_at - rng.uniform(1, 45) * DAY
            lead = self.new("lead", {
                "first_name": contact.fields["first_name"],
                "last_name": contact.fields["last_name"], "company": account.fields["name"],
                "email": contact.fields["email"], "status": "Closed - Converted",
                "lead_source": opportunity.fields["lead_source"],
                "industry": account.fields["industry"], "is_converted": True,
            }, {"title": contact.fields["title"], "phone": contact.extra["phone"],
                "rating": rng.choice(("Hot", "Warm")),
                "annual_revenue": account.fields["annual_revenue"],
                "employee_count": account.fields["employee_count"],
                "country": account.fields["billing_country"],
                "converted_at": millis(converted_at)},
                {"owner_id": owner, "converted_opportunity_id": opportunity,
                 "converted_account_id": account, "converted_contact_id": contact})
            self.stamp(lead, created, converted_at, self.admin, owner)
        statuses = (("Open - Not Contacted", 0.3), ("Working - Contacted", 0.3),
                    ("Closed - Not Converted", 0.4))
        for _ in range(n_leads - len(converted)):
            industry = rng.choices(self.industries, cum_weights=self.industry_weights)[0]
            country = rng.choices(self.countries, cum_weights=self.country_weights)[0]
            company = self.fake.company_name(industry, country, unique=False)
            first, last = self.fake.person()
            title, _ = rng.choice(CONTACT_TITLES)
            created = self.business_time(self.anchor_day - rng.uniform(0, 730) * DAY)
            status = self.fake.weighted(statuses)
            if status != "Closed - Not Converted" and self.anchor - created > 120 * DAY and (
                rng.random() < 0.6
            ):
                status = "Closed - Not Converted"
            lead_owner = rng.choice(active) if rng.random() < 0.9 else self.admin
            employees = int(math.exp(rng.uniform(math.log(5), math.log(20000))))
            lead = self.new("lead", {
                "first_name": first, "last_name": last, "company": company,
                "email": f"{slug(first)}.{slug(last)}@{self.fake.domain(company, country)}",
                "status": status, "lead_source": self.fake.weighted(LEAD_SOURCE_WEIGHTS),
                "industry": industry, "is_converted": False,
            }, {"title": title, "phone": self.fake.phone(country),
                "rating": rng.choice(("Hot", "Warm", "Cold", None)),
                "annual_revenue": float(round(employees * rng.uniform(60_000, 300_000), -3)),
                "employee_count": employees, "country": country, "converted_at": None},
                {"owner_id": lead_owner, "converted_opportunity_id": None,
                 "converted_account_id": None, "converted_contact_id": None})
            creator = self.admin if rng.random() < 0.5 else lead_owner
            self.stamp(lead, created, self.between(created, self.anchor), creator, lead_owner)


def _year_month(day_start: float) -> tuple[int, int]:
    parts = time.gmtime(day_start)
    return parts.tm_year, parts.tm_mon
