"""HubSpot (CRM v3): companies, contacts, deals with line items, products and owners."""
