"""The composition root: the `accrue` command and the demo, the one package that may import
every other (connectors, the core `accrue`, the pipelines and the concierge) and that none
imports. Keeping it above them is what lets the core import nothing above itself
(docs/architecture.md).
"""
