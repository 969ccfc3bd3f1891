"""Extension objects, bound to the app in create_app (cookiecutter-flask style)."""

from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
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
# Every POST, PUT, PATCH and DELETE needs the token: in the form or the X-CSRFToken header.
csrf = CSRFProtect()
# Storage from RATELIMIT_STORAGE_URI (memory:// locally; Redis when several processes serve).
limiter = Limiter(key_func=get_remote_address)
