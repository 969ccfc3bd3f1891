"""The concierge as a WSGI application, for a production server.

    gunicorn onboarding_app.wsgi:app --bind 0.0.0.0:5050 --workers 2 --threads 4

(`accrue app` runs exactly this.) Settings come from the environment
(`onboarding_app/settings.py`); in production the app refuses to start without
its public URL, its keys and shared rate-limit storage.
"""

from onboarding_app import create_app

app = create_app()
