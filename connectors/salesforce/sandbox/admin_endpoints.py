"""The sandbox's own switches under `/_sandbox/`: settings, custom fields, purges, hard
deletes, session expiry, faults and the generator's ground truth (no Salesforce twin)."""

from __future__ import annotations

from werkzeug.wrappers import Response

from .context import Endpoints, RequestContext, json_response
from .errors import ApiError
from .faults import FaultInjector


class AdminEndpoints(Endpoints):
    """`/_sandbox/…`: test and benchmark controls, unauthenticated like a local admin port."""

    faults: FaultInjector

    # -- admin ---------------------------------------------------------------

    def admin_health(self, ctx: RequestContext) -> Response:
        return json_response(self.sandbox.health())

    def admin_config(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            changes = self.body(ctx)
            if not isinstance(changes, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object of settings")
            return json_response(self.sandbox.update_config(changes).to_dict())
        return json_response(self.sandbox.config.to_dict())

    def admin_fields(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            spec = self.body(ctx)
            if not isinstance(spec, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object describing the "
                                                         "field")
            return json_response(self.sandbox.add_custom_field(spec), 201)
        return json_response(self.sandbox.custom_fields())

    def admin_field(self, ctx: RequestContext, sobject: str, name: str) -> Response:
        self.sandbox.remove_custom_field(sobject, name)
        return Response(status=204)

    def admin_purge(self, ctx: RequestContext) -> Response:
        body = self.body(ctx)
        sobject = body.get("sobject") if isinstance(body, dict) else None
        purged = self.sandbox.purge(sobject)
        return json_response({"purged": purged,
                              "earliestDateAvailable": self.sandbox.write_timestamp()})

    def admin_hard_delete(self, ctx: RequestContext) -> Response:
        body = self.body(ctx)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "JSON_PARSER_ERROR", "Send {\"ids\": [\"…\", …]}")
        return json_response(self.sandbox.hard_delete(ids))

    def admin_expire_sessions(self, ctx: RequestContext) -> Response:
        return json_response({"expired": self.sandbox.expire_sessions()})

    def admin_faults(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            changes = self.body(ctx)
            if not isinstance(changes, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object of fault switches")
            return json_response(self.faults.update(changes))
        if ctx.request.method == "DELETE":
            return json_response(self.faults.clear())
        return json_response(self.faults.state())

    def admin_bulk_expire(self, ctx: RequestContext) -> Response:
        return json_response({"expired": self.sandbox.bulk.expire_all()})

    def admin_truth(self, ctx: RequestContext) -> Response:
        truth = self.sandbox.truth()
        if truth is None:
            raise ApiError(404, "NOT_FOUND", "This sandbox was not seeded by the generator")
        return json_response(truth)
