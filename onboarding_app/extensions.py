"""Extension objects, bound to the app in create_app (cookiecutter-flask style)."""

from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy.engine import Engine

from accrue import config, db


class WarehouseExtension:
    """The shared registry/warehouse engine, one per app (DATABASE_URL or the default)."""

    key = "accrue_warehouse"

    def init_app(self, app: Flask) -> None:
        url = app.config.get("DATABASE_URL") or config.database_url()
        app.extensions[self.key] = db.make_engine(url)

    @property
    def engine(self) -> Engine:
        return current_app.extensions[self.key]


warehouse = WarehouseExtension()
