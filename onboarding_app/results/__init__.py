"""Results: deals with their recommended prices, revenue opportunities, the team.

Every page is for every role; what it shows is cut to the person's scope
(`scope.py`), and every query goes through `queries.py`, which takes that scope.
"""

from flask import Blueprint

bp = Blueprint("results", __name__)

from onboarding_app.results import downloads, views  # noqa: E402,F401  (the routes)
