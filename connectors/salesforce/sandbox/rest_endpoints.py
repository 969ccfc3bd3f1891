"""The REST API's endpoints: discovery, limits, SOQL queries, describe, records,
sObject Collections, the replication feeds (`updated` / `deleted`) and Bulk API 2.0 jobs."""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.wrappers import Response

from .context import Endpoints, RequestContext, json_response
from .errors import ApiError

_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
API_VERSIONS = [f"{v}.0" for v in range(31, 63)]


def _version_label(version: str) -> str:
    index = int(float(version)) - 20
    return f"{('Winter', 'Spring', 'Summer')[index % 3]} '{11 + index // 3:02d}"


def _window_args(ctx: RequestContext) -> tuple[str, str]:
    start, end = ctx.request.args.get("start"), ctx.request.args.get("end")
    if not start or not end:
        raise ApiError(400, "MISSING_ARGUMENT", "start and end parameters are required")
    return start, end


class RestEndpoints(Endpoints):
    """`/services/data/v<version>/…`; the app authenticates and meters each call first."""

    # -- REST: discovery and limits ------------------------------------------

    def versions(self, ctx: RequestContext) -> Response:
        return json_response([
            {"label": _version_label(v), "url": f"/services/data/v{v}", "version": v}
            for v in API_VERSIONS
        ])

    def resources(self, ctx: RequestContext, version: str) -> Response:
        base = f"/services/data/v{version}"
        return json_response({name: f"{base}/{name}" for name in (
            "sobjects", "query", "queryAll", "limits", "composite", "recent", "search",
            "tooling", "metadata")})

    def limits(self, ctx: RequestContext, version: str) -> Response:
        used, limit = ctx.api_usage or self.sandbox.api_usage()

        def fixed(maximum: int) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum}

        return json_response({
            "ConcurrentAsyncGetReportInstances": fixed(200),
            "ConcurrentSyncReportRuns": fixed(20),
            "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
            "DailyAsyncApexExecutions": fixed(250000),
            "DailyBulkApiBatches": fixed(15000),
            "DailyBulkV2QueryFileStorageMB": fixed(976562),
            "DailyBulkV2QueryJobs": fixed(10000),
            "DailyDurableStreamingApiEvents": fixed(10000),
            "DailyStreamingApiEvents": fixed(10000),
            "DataStorageMB": fixed(1024),
            "FileStorageMB": fixed(1024),
            "HourlyTimeBasedWorkflow": fixed(1000),
            "SingleEmail": fixed(5000),
        })

    # -- REST: query ---------------------------------------------------------

    def query(self, ctx: RequestContext, version: str) -> Response:
        soql = ctx.request.args.get("q")
        if soql is None or not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        batch_size = None
        options = ctx.request.headers.get("Sforce-Query-Options", "")
        match = _BATCH_SIZE.search(options)
        if match:
            batch_size = min(2000, max(200, int(match.group(1))))
        include_deleted = ctx.endpoint == "rest.query_all"
        return json_response(self.sandbox.query(soql, include_deleted=include_deleted,
                                                version=version, batch_size=batch_size))

    def query_more(self, ctx: RequestContext, version: str, locator: str) -> Response:
        return json_response(self.sandbox.query_more(locator, version=version))

    # -- REST: describe and records ------------------------------------------

    def describe_global(self, ctx: RequestContext, version: str) -> Response:
        return json_response(self.sandbox.describe_global(version))

    def describe(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        return json_response(self.sandbox.describe(sobject, version))

    def sobject(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        obj = self.sandbox.schema.require(sobject)
        if ctx.request.method == "POST":
            record_id = self.sandbox.create(obj.name, self.body(ctx), user_id=ctx.user_id)
            return json_response({"id": record_id, "success": True, "errors": []}, 201)
        return json_response({
            "objectDescribe": obj.describe_global_entry(version),
            "recentItems": self.sandbox.recent_items(obj.name, version),
        })

    def record(self, ctx: RequestContext, version: str, sobject: str,
               record_id: str) -> Response:
        method = ctx.request.method
        if method == "GET":
            fields = ctx.request.args.get("fields")
            names = [f for f in fields.split(",") if f.strip()] if fields else None
            return json_response(self.sandbox.get_record(sobject, record_id, fields=names,
                                                         version=version))
        if method == "PATCH":
            self.sandbox.update(sobject, record_id, self.body(ctx), user_id=ctx.user_id)
        else:
            self.sandbox.delete(sobject, record_id, user_id=ctx.user_id)
        return Response(status=204)

    def updated(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        start, end = _window_args(ctx)
        return json_response(self.sandbox.updated(sobject, start, end))

    def deleted(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        start, end = _window_args(ctx)
        return json_response(self.sandbox.deleted(sobject, start, end))

    # -- REST: sObject Collections -------------------------------------------

    def collection(self, ctx: RequestContext, version: str) -> Response:
        method = ctx.request.method
        if method == "DELETE":
            ids = [i for i in (ctx.request.args.get("ids") or "").split(",") if i.strip()]
            if not ids:
                raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
            all_or_none = (ctx.request.args.get("allOrNone") or "false").lower() == "true"
            return json_response(self.sandbox.collection_delete(
                [i.strip() for i in ids], all_or_none=all_or_none, user_id=ctx.user_id))
        body = self.body(ctx)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must have a 'records' "
                                                     "list")
        all_or_none = bool(body.get("allOrNone", False))
        if method == "POST":
            results = self.sandbox.collection_create(records, all_or_none=all_or_none,
                                                     user_id=ctx.user_id)
        else:
            results = self.sandbox.collection_update(records, all_or_none=all_or_none,
                                                     user_id=ctx.user_id)
        return json_response(results)

    def collection_get(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        ids = [i.strip() for i in (ctx.request.args.get("ids") or "").split(",") if i.strip()]
        fields = [f for f in (ctx.request.args.get("fields") or "").split(",") if f.strip()]
        if not ids or not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
        if len(ids) > 2000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "Maximum number of ids exceeded. Limit is "
                                                     "2000")
        records: list[Any] = []
        for record_id in ids:
            try:
                records.append(json.loads(self.sandbox.get_record(
                    sobject, record_id, fields=fields, version=version)))
            except ApiError as error:
                if error.status != 404:
                    raise
                records.append(None)
        return json_response(records)

    # -- Bulk API 2.0 query jobs (bulk.py) ------------------------------------

    def bulk_create(self, ctx: RequestContext, version: str) -> Response:
        return json_response(self.sandbox.bulk.create(self.body(ctx), user_id=ctx.user_id or "",
                                                      version=version))

    def bulk_job(self, ctx: RequestContext, version: str, job_id: str) -> Response:
        if ctx.request.method == "PATCH":
            return json_response(self.sandbox.bulk.abort(job_id, self.body(ctx), version))
        if ctx.request.method == "DELETE":
            self.sandbox.bulk.delete(job_id)
            return Response(status=204)
        return json_response(self.sandbox.bulk.poll(job_id, version))

    def bulk_results(self, ctx: RequestContext, version: str, job_id: str) -> Response:
        body, headers = self.sandbox.bulk.results(job_id, ctx.request.args.get("maxRecords"),
                                                  ctx.request.args.get("locator"))
        return Response(body, status=200, content_type="text/csv", headers=headers)
