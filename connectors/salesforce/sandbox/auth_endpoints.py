"""Signing in: the SOAP partner API (login, undelete) and the OAuth 2.0 endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from werkzeug.wrappers import Response

from . import soap
from .context import Endpoints, RequestContext, json_response
from .errors import ApiError
from .oauth import OAuthError, OAuthServer, consent_page, redirect_target


def _redirect(location: str) -> Response:
    return Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _soap_fault(code: str, message: str, fault_type: str = "UnexpectedErrorFault") -> Response:
    return Response(soap.fault(code, message, fault_type), status=500,
                    content_type="text/xml;charset=UTF-8")


class AuthEndpoints(Endpoints):
    """`/services/Soap/u/…` and `/services/oauth2/…`."""

    oauth: OAuthServer

    # -- SOAP ----------------------------------------------------------------

    def soap_partner(self, ctx: RequestContext, version: str, org_id: str | None = None
                     ) -> Response:
        call = soap.parse_call(ctx.request.get_data())
        if call is None:
            return _soap_fault("INVALID_REQUEST", "Unable to parse the SOAP request envelope")
        if call.operation == "login":
            return self._soap_login(ctx, call, version)
        if call.operation == "undelete":
            return self._soap_undelete(ctx, call)
        return _soap_fault("INVALID_OPERATION",
                           f"No operation available for request {{{soap.PARTNER}}}"
                           f"{call.operation}")

    def _soap_login(self, ctx: RequestContext, call: soap.SoapCall, version: str) -> Response:
        sid = self.sandbox.login(call.text("username") or "", call.text("password") or "")
        if sid is None:
            return _soap_fault("INVALID_LOGIN", soap.INVALID_LOGIN, "LoginFault")
        host = ctx.request.host
        org15 = self.sandbox.org_id[:15]
        sandbox = self.sandbox
        user = json.loads(sandbox.get_record("User", sandbox.admin_user_id))
        body = soap.login_response(
            server_url=f"https://{host}/services/Soap/u/{version}/{org15}",
            metadata_url=f"https://{host}/services/Soap/m/{version}/{org15}",
            session_id=sid,
            user_id=sandbox.admin_user_id,
            user_info={
                "accessibilityMode": False, "chatterExternal": False, "currencySymbol": "$",
                "orgAttachmentFileSizeLimit": 5242880, "orgDefaultCurrencyIsoCode": "USD",
                "orgDefaultCurrencyLocale": "en_US", "orgDisallowHtmlAttachments": False,
                "orgHasPersonAccounts": False, "organizationId": sandbox.org_id,
                "organizationMultiCurrency": False, "organizationName": sandbox.config.org_name,
                "profileId": sandbox.profile_id(), "roleId": None,
                "sessionSecondsValid": sandbox.config.session_lifetime_seconds,
                "userDefaultCurrencyIsoCode": None, "userEmail": user.get("Email"),
                "userFullName": user.get("Name"), "userId": sandbox.admin_user_id,
                "userLanguage": "en_US", "userLocale": "en_US", "userName": user.get("Username"),
                "userTimeZone": "GMT", "userType": "Standard", "userUiSkin": "Theme3",
            },
        )
        return Response(body, status=200, content_type="text/xml;charset=UTF-8")

    def _soap_undelete(self, ctx: RequestContext, call: soap.SoapCall) -> Response:
        try:
            ctx.user_id = self.sandbox.authenticate(call.session_id)
        except ApiError:
            return _soap_fault("INVALID_SESSION_ID", "INVALID_SESSION_ID: Invalid Session ID "
                                                     "found in SessionHeader: Illegal Session")
        try:
            ctx.api_usage = self.sandbox.meter_api_call()
            results = self.sandbox.undelete(call.texts("ids"), user_id=ctx.user_id)
        except ApiError as error:
            return _soap_fault(error.code, f"{error.code}: {error.message}")
        body = soap.undelete_response(results, ctx.api_usage)
        return Response(body, status=200, content_type="text/xml;charset=UTF-8")

    # -- OAuth 2.0 ------------------------------------------------------------

    def oauth_token(self, ctx: RequestContext) -> Response:
        """Token endpoint: authorization_code (with PKCE), refresh_token and password grants.

        `grant_type=authorization_code` exchanges a code from the authorize page
        and its `code_verifier` for an access token and a refresh token;
        `grant_type=refresh_token` takes a refresh token issued that way (or, for
        older clients, the security token); `grant_type=password` takes the
        username and password + security token. Errors use Salesforce's OAuth
        JSON shape `{"error", "error_description"}`.
        """
        form = {k: v for k, v in ctx.request.form.items()}
        grant = form.get("grant_type", "")
        try:
            tokens = self._grant(grant, form)
        except OAuthError as error:
            return json_response(error.as_json(), error.status)
        host = ctx.request.host
        issued = str(int(self.sandbox.now().timestamp() * 1000))
        identity = f"https://{host}/id/{self.sandbox.org_id}/{self.sandbox.admin_user_id}"
        signature = base64.b64encode(hmac.new(
            self.sandbox.security_token.encode(), (identity + issued).encode(), hashlib.sha256
        ).digest()).decode()
        return json_response({
            **tokens, "instance_url": f"https://{host}", "id": identity,
            "token_type": "Bearer", "issued_at": issued, "signature": signature,
        }, headers={"Cache-Control": "no-store"})

    def _grant(self, grant: str, form: dict[str, str]) -> dict[str, str]:
        if grant == "authorization_code":
            return self.oauth.exchange_code(form)
        sid: str | None = None
        if grant == "password":
            sid = self.sandbox.login(form.get("username", ""), form.get("password", ""))
        elif grant == "refresh_token":
            issued = self.oauth.refresh(form)
            if issued is not None:
                return issued
            token = form.get("refresh_token", "")
            if token and hmac.compare_digest(token.encode(),
                                             self.sandbox.security_token.encode()):
                sid = self.sandbox.login(self.sandbox.username,
                                         self.sandbox.password + self.sandbox.security_token)
            if sid is None:
                raise OAuthError("invalid_grant", "expired access/refresh token")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        if sid is None:
            raise OAuthError("invalid_grant", "authentication failure")
        return {"access_token": sid}

    def oauth_authorize(self, ctx: RequestContext) -> Response:
        """The consent page (GET) and the user's decision (POST), which redirects back."""
        source = ctx.request.args if ctx.request.method == "GET" else ctx.request.form
        args = {k: v for k, v in source.items()}
        try:
            request = self.oauth.parse_authorize(args)
        except OAuthError as error:  # never redirect to an unchecked redirect_uri
            return Response(f"<!doctype html><title>OAuth error</title><h1>{error.error}</h1>"
                            f"<p>{error.description}</p>", status=400,
                            content_type="text/html;charset=UTF-8")
        try:
            self.oauth.check_authorize(request, args)
        except OAuthError as error:
            return _redirect(redirect_target(request.redirect_uri, {
                "error": error.error, "error_description": error.description,
                "state": request.state}))
        if ctx.request.method == "GET":
            user = json.loads(self.sandbox.get_record("User", self.sandbox.admin_user_id))
            page = consent_page(self.oauth, request, str(user.get("Name") or ""),
                                self.sandbox.username)
            return Response(page, content_type="text/html;charset=UTF-8", headers={
                "Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "form-action 'self' http: https:; "
                                           "frame-ancestors 'none'"})
        if not hmac.compare_digest(args.get("consent_token", ""),
                                   self.oauth.consent_token(request)):
            return Response("<!doctype html><title>OAuth error</title><h1>invalid_request</h1>"
                            "<p>The consent form was not submitted from this page.</p>",
                            status=400, content_type="text/html;charset=UTF-8")
        if args.get("decision") != "allow":
            return _redirect(redirect_target(request.redirect_uri, {
                "error": "access_denied", "error_description": "end-user denied authorization",
                "state": request.state}))
        code = self.oauth.issue_code(request)
        return _redirect(redirect_target(request.redirect_uri,
                                         {"code": code, "state": request.state}))

    def oauth_revoke(self, ctx: RequestContext) -> Response:
        """Revoke a refresh token (`token=`); unknown tokens get `unsupported_token_type`."""
        token = ctx.request.values.get("token", "")
        if not self.oauth.revoke(token):
            return json_response({"error": "unsupported_token_type",
                                  "error_description": "this token type is not supported"}, 400)
        return Response(status=200)
