"""A local SugarCRM instance speaking REST v11, seeded from the sandbox kit's deal model."""
