"""Oracle NetSuite: the adapter (`connector`), its record mapping (`mapping`), our thin
SuiteTalk REST client (`client`), the spec (`spec`) and a local account that speaks
SuiteTalk REST (`sandbox/`). Import the adapter from `connectors.netsuite.connector`."""
