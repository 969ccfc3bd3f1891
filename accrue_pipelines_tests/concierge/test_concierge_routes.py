"""The concierge's URLs and endpoint names are a contract: templates, e-mails, bookmarks,
the API's clients and the tests name them. Moving a view between modules must not
change one; changing one on purpose means updating `concierge_routes.txt` with it."""

from pathlib import Path

from onboarding_app import create_app

ROUTES = Path(__file__).with_name("concierge_routes.txt")


def _expected() -> list[str]:
    lines = ROUTES.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_every_url_rule_keeps_its_methods_and_endpoint():
    app = create_app({"TESTING": True, "ENV_NAME": "development", "DATABASE_URL": "sqlite://"})
    actual = sorted(f"{rule.rule} {','.join(sorted(rule.methods or ()))} {rule.endpoint}"
                    for rule in app.url_map.iter_rules())
    assert actual == _expected()
