"""A fitted price model as a JSON document, and the hash of what it was fitted on.

Fit once per tenant and data version: the empirical-Bayes fit with its control
function is the costly part of the analytics, and both `price_recommendations` and
`revenue_opportunities` need the same model. The store keeps one document per tenant
(table `price_model`); a caller whose training data hash the same reuses it.

The hash covers the fit's inputs: the training frame (`pricing.training_frame`: the
priced closed deals, in order, with the columns the fit and its explanations read,
the missing-quote offset included, so a changed quoting pattern refits),
the `PricingConfig`, and `FIT_VERSION`, a digest of the code that computes a fit, so
a changed fit is never served from an old document. The training frame itself is
not stored: a reader has the same deals (that is what the hash says) and rebuilds it.

Floats are JSON numbers (Python writes the shortest text that reads back to the same
double, so parameters round-trip exactly); non-finite ones (a pooled model's NaN
prior precisions, infinite size cuts) are the strings "nan", "inf", "-inf", which
`float()` reads back. Ordered maps are lists of pairs: PostgreSQL's JSONB does not
keep key order, and the order of the segment levels is the order of the model's
columns.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accrue.analytics import estimation, pricing, quote_sampling, segments
from accrue.analytics.estimation import FirstStage, PricingConfig, _Design
from accrue.analytics.pricing import OFFSET, PriceModel, training_frame
from accrue.analytics.quote_sampling import QuoteSampling, QuoteShare
from accrue.analytics.segments import PriceBand

FORMAT = 2  # the document's layout; part of FIT_VERSION (2: the missing-quote sampling)

Document = dict[str, Any]


def _fit_version() -> str:
    """A digest of the code that turns a training frame into a model (and of this format)."""
    digest = hashlib.sha256(str(FORMAT).encode())
    for module in (pricing, estimation, quote_sampling, segments):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


FIT_VERSION = _fit_version()


def _num(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _array(values: np.ndarray | None) -> Document | None:
    if values is None:
        return None
    flat = np.asarray(values, float)
    return {"shape": list(flat.shape), "values": [_num(v) for v in flat.ravel()]}


def _unarray(doc: Document | None) -> np.ndarray | None:
    if doc is None:
        return None
    return np.array([float(v) for v in doc["values"]], dtype=float).reshape(doc["shape"])


def _floats(mapping: dict[str, float]) -> list[list[Any]]:
    return [[k, _num(v)] for k, v in mapping.items()]


def _levels(levels: dict[str, tuple[str, ...]]) -> list[list[Any]]:
    return [[dim, list(values)] for dim, values in levels.items()]


def _unlevels(pairs: list[list[Any]]) -> dict[str, tuple[str, ...]]:
    return {str(dim): tuple(str(v) for v in values) for dim, values in pairs}


def _config(config: PricingConfig) -> Document:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _unconfig(doc: Document) -> PricingConfig:
    defaults = PricingConfig()
    values: dict[str, Any] = {
        f.name: tuple(doc[f.name]) if isinstance(getattr(defaults, f.name), tuple)
        else doc[f.name] for f in fields(PricingConfig) if f.name in doc}
    return PricingConfig(**values)


def _share(share: QuoteShare) -> list[Any]:
    return [share.group, share.won, share.won_priced, share.lost, share.lost_priced]


def _unshare(row: list[Any]) -> QuoteShare:
    return QuoteShare(str(row[0]), *(int(v) for v in row[1:]))


def to_document(model: PriceModel) -> Document:
    """The fitted model as JSON-ready data (everything but the training frame)."""
    design = model.design
    stage = model.first_stage
    return {
        "format": FORMAT,
        "config": _config(model.config),
        "usable": model.usable,
        "reasons": list(model.reasons),
        "counts": [model.n_closed, model.n_won, model.n_lost],
        "x_mean": _num(model.x_mean),
        "ratio_range": [_num(v) for v in model.ratio_range],
        "deal_size_cuts": [_num(v) for v in model.deal_size_cuts],
        "design": None if design is None else {
            "x_mean": _num(design.x_mean), "levels": _levels(design.levels),
            "hierarchical": design.hierarchical, "control": design.control},
        "theta": _array(model.theta),
        "covariance": _array(model.covariance),
        "lambdas": [_num(v) for v in model.lambdas],
        "price_test": _floats(model.price_test),
        "bands": [{"level": list(b.level), "key": list(b.key), "floor": _num(b.floor),
                   "target": _num(b.target), "start": _num(b.start),
                   "won_deals": b.won_deals, "won_low": _num(b.won_low)}
                  for b in model.bands.values()],
        "identification": model.identification,
        "first_stage": None if stage is None else {
            "instrument": stage.instrument, "sellers": list(stage.sellers),
            "levels": _levels(stage.levels), "coef": _array(stage.coef),
            "covariance": _array(stage.covariance), "sigma": _num(stage.sigma),
            "f_stat": _num(stage.f_stat), "df": list(stage.df), "n_sellers": stage.n_sellers},
        "control": _floats(model.control),
        "tenant_curve": None if model.tenant_curve is None else to_document(model.tenant_curve),
        "sampling": None if model.sampling is None else {
            "applied": model.sampling.applied, "total": _share(model.sampling.total),
            "groups": [_share(g) for g in model.sampling.groups]},
    }


def from_document(doc: Document, history: pd.DataFrame) -> PriceModel:
    """The model `to_document` wrote, with `history` (its `training_frame`) as its deals."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"price model document format {doc.get('format')!r}, expected {FORMAT}")
    design, stage, sampling = doc["design"], doc["first_stage"], doc.get("sampling")
    bands = [PriceBand(tuple(b["level"]), tuple(b["key"]), float(b["floor"]),
                       float(b["target"]), float(b["start"]), int(b["won_deals"]),
                       float(b["won_low"])) for b in doc["bands"]]
    n_closed, n_won, n_lost = (int(v) for v in doc["counts"])
    lo, hi = (float(v) for v in doc["ratio_range"])
    cut_lo, cut_hi = (float(v) for v in doc["deal_size_cuts"])
    lam_a, lam_b = (float(v) for v in doc["lambdas"])
    first_stage = None
    if stage is not None:
        coef, covariance = _unarray(stage["coef"]), _unarray(stage["covariance"])
        assert coef is not None and covariance is not None
        first_stage = FirstStage(
            str(stage["instrument"]), tuple(str(s) for s in stage["sellers"]),
            _unlevels(stage["levels"]), coef, covariance, float(stage["sigma"]),
            float(stage["f_stat"]), (int(stage["df"][0]), int(stage["df"][1])),
            int(stage["n_sellers"]))
    return PriceModel(
        config=_unconfig(doc["config"]), usable=bool(doc["usable"]),
        reasons=[str(r) for r in doc["reasons"]], n_closed=n_closed, n_won=n_won,
        n_lost=n_lost, x_mean=float(doc["x_mean"]), ratio_range=(lo, hi),
        deal_size_cuts=(cut_lo, cut_hi),
        design=None if design is None else _Design(
            float(design["x_mean"]), _unlevels(design["levels"]), bool(design["hierarchical"]),
            bool(design["control"])),
        theta=_unarray(doc["theta"]), covariance=_unarray(doc["covariance"]),
        lambdas=(lam_a, lam_b),
        price_test={str(k): float(v) for k, v in doc["price_test"]},
        bands={(b.level, b.key): b for b in bands}, history=history,
        identification=str(doc["identification"]), first_stage=first_stage,
        control={str(k): float(v) for k, v in doc["control"]},
        tenant_curve=None if doc["tenant_curve"] is None
        else from_document(doc["tenant_curve"], history),
        sampling=None if sampling is None else QuoteSampling(
            bool(sampling["applied"]), _unshare(sampling["total"]),
            tuple(_unshare(g) for g in sampling["groups"])),
    )


def restore(doc: Document, deals: pd.DataFrame) -> PriceModel:
    """The stored model for the deals it was fitted on (the caller checked the hash)."""
    history, _ = training_frame(deals, _unconfig(doc["config"]))
    return from_document(doc, history)


def training_hash(deals: pd.DataFrame, config: PricingConfig) -> str:
    """SHA-256 of what a fit on `deals` depends on: the training frame, config, fit code."""
    closed, _ = training_frame(deals, config)
    columns = [c for c in dict.fromkeys(("opportunity_id", "close_date", "is_won", "ratio",
                                         "list_total", config.instrument, *config.dimensions,
                                         OFFSET))
               if c in closed.columns]
    digest = hashlib.sha256(FIT_VERSION.encode())
    digest.update(json.dumps(_config(config), sort_keys=True).encode())
    digest.update(closed[columns].to_csv(index=False).encode())
    return digest.hexdigest()


def model_version(model: PriceModel, data_hash: str) -> str:
    """What recommendation rows carry to name their fit: curve or bands, deals, the hash."""
    return f"{'curve' if model.usable else 'bands'}-{model.n_closed}-{data_hash[:12]}"
