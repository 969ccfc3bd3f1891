"""Salesforce: the adapter (`connector`), its mapping (`mapping`, `activity`), the client
transport that points simple-salesforce at the local sandbox (`transport`) and the
sandbox itself (`sandbox`). Import from the submodules; code that patches the adapter's
globals (for example `map_record`) patches `connectors.salesforce.connector`.
"""
