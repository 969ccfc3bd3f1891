"""Error pages: a page for people, JSON for JSON callers and the API; never a traceback."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from onboarding_app.logs import get_logger

API_PREFIX = "/api/"  # every answer there is JSON, whatever the client accepts


def _error(code: int, title: str, message: str) -> tuple[Any, int]:
    if (request.accept_mimetypes.best == "application/json" or request.path.endswith(".json")
            or request.path.startswith(API_PREFIX)):
        return jsonify(error=title, message=message), code
    return render_template("error.html", title=title, message=message, back=None), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(_: CSRFError) -> tuple[Any, int]:
        return _error(400, "This form has expired",
                      "For your security the page was not submitted. Reload it and try again.")

    @app.errorhandler(404)
    def _not_found(_: HTTPException) -> tuple[Any, int]:
        return _error(404, "Page not found", "There is nothing at this address.")

    @app.errorhandler(429)
    def _too_many(_: HTTPException) -> tuple[Any, int]:
        return _error(429, "Too many attempts",
                      "Please wait a minute before trying again.")

    @app.errorhandler(413)
    def _too_large(_: HTTPException) -> tuple[Any, int]:
        limit = app.config["MAX_CONTENT_LENGTH"] // 1024
        return _error(413, "Too much data",
                      f"A form may send at most {limit} KB. Shorten what you entered.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Any, int]:
        """Every other HTTP error, as a page or as JSON for JSON callers."""
        return _error(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Any, int]:
        # Logged with its traceback (through the redacting filter); the person gets no detail.
        get_logger(__name__).exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "Something went wrong",
                      "The error was logged. Try again; if it repeats, tell your Accrue contact.")
