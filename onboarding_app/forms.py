"""The one form every feature shares. Flask-WTF adds the CSRF token to each form; each
feature keeps its own forms in its package (`auth/forms.py`, `wizard/forms.py` ...).
"""

from __future__ import annotations

from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """Pages whose only input is the button pressed (Welcome, Complete, logout)."""
