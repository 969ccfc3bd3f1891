"""SugarCRM: the adapter (`connector`), its record mapping (`mapping`), our thin REST v11
client (`client`), the spec (`spec`) and a local instance that speaks REST v11
(`sandbox/`). Import the adapter from `connectors.sugarcrm.connector`."""
