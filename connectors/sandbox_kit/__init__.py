"""What every CRM's sandbox shares: the seeded deal model, the server runner, the transport
that points a CRM's real client at the sandbox, fault switches and the test harness API.

A CRM sandbox (`connectors/<crm>/sandbox/`) then holds only its API's shapes.
"""
