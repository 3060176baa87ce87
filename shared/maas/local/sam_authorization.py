"""A route's authorization as SAM configures it, decided when the template is read.

API Gateway checks one thing before it invokes a route: the event's Auth.Authorizer if it names one,
else the security requirement of the route's operation in the API's OpenAPI DefinitionBody, else the
API's DefaultAuthorizer. SAM's reserved names (AWS_IAM, NONE), the API's Auth.Authorizers and OpenAPI
security schemes (SigV4, JWT, Lambda authorizers) all end up as one `RouteAuthorization`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maas.local.cloudformation import IntrinsicResolver, TemplateError, UnresolvedIntrinsicError, scalar_text
from maas.local.sam import (
    ANY_METHOD,
    DEFAULT_IDENTITY_SOURCE,
    NO_AUTHORIZATION,
    JwtConfiguration,
    RouteAuthorization,
    TemplateRoute,
)

# Authorizer names SAM reserves in an event's Auth.Authorizer and an API's DefaultAuthorizer.
IAM_AUTHORIZER = "AWS_IAM"
NO_AUTHORIZER = "NONE"
# How an API Gateway OpenAPI document names ANY and marks SigV4 and JWT security schemes.
OPENAPI_ANY_METHOD = "x-amazon-apigateway-any-method"
OPENAPI_AUTHTYPE = "x-amazon-apigateway-authtype"
OPENAPI_AUTHORIZER = "x-amazon-apigateway-authorizer"
SIGV4_AUTHTYPE = "awsSigv4"


def route_authorization(
    route: TemplateRoute,
    event_properties: Mapping[str, Any],
    api: Mapping[str, Any],
    resolver: IntrinsicResolver,
) -> RouteAuthorization:
    """What API Gateway enforces on a route, as SAM configures it: the event's Auth.Authorizer, else the
    security of the route's operation in the API's DefinitionBody, else the API's DefaultAuthorizer."""
    where = f"{route.function_id}.{route.event_id}"
    auth = _mapping(api.get("Auth"))
    authorizers = _mapping(auth.get("Authorizers"))
    event_auth = _mapping(event_properties.get("Auth"))
    try:
        scopes = _strings(resolver.resolve_value(event_auth.get("AuthorizationScopes")))
        if event_auth.get("Authorizer") is not None:
            name = resolver.resolve(event_auth["Authorizer"])
            return _named_authorization(name, scopes, authorizers, resolver, where)
        body = _mapping(api.get("DefinitionBody"))
        security = _operation_security(body, route)
        if security is not None:
            return _security_authorization(security, scopes, body, authorizers, resolver, where=where)
        if auth.get("DefaultAuthorizer") is not None:
            name = resolver.resolve(auth["DefaultAuthorizer"])
            return _named_authorization(name, scopes, authorizers, resolver, where)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{where}: its authorization has no local value ({exc})") from None
    return NO_AUTHORIZATION


def _operation_security(body: Mapping[str, Any], route: TemplateRoute) -> Any:
    """The OpenAPI security requirements of the route's operation, else the document's; None if neither."""
    path_item = _mapping(_mapping(body.get("paths")).get(route.path))
    operation = _mapping(
        path_item.get(OPENAPI_ANY_METHOD if route.method == ANY_METHOD else route.method.lower())
    )
    if "security" in operation:
        return operation["security"]
    return body.get("security")


def _security_authorization(
    security: Any,
    route_scopes: tuple[str, ...],
    body: Mapping[str, Any],
    authorizers: Mapping[str, Any],
    resolver: IntrinsicResolver,
    *,
    where: str,
) -> RouteAuthorization:
    requirements = resolver.resolve_value(security)
    if not isinstance(requirements, list) or not all(isinstance(r, dict) for r in requirements):
        raise TemplateError(
            f"{where}: expected its OpenAPI security to be a list of mappings, got {requirements!r}"
        )
    # [] and [{}] both mean "no authorization"; API Gateway honours one requirement per route.
    named = [r for r in requirements if r]
    if not named:
        return NO_AUTHORIZATION
    if len(named) > 1 or len(named[0]) > 1:
        raise TemplateError(f"{where}: expected one OpenAPI security requirement, got {requirements!r}")
    name, scheme_scopes = next(iter(named[0].items()))
    scopes = route_scopes or _strings(scheme_scopes)
    scheme = _mapping(_mapping(_mapping(body.get("components")).get("securitySchemes")).get(name))
    if scheme.get(OPENAPI_AUTHTYPE) == SIGV4_AUTHTYPE:
        return RouteAuthorization("AWS_IAM", str(name))
    extension = _mapping(scheme.get(OPENAPI_AUTHORIZER))
    if extension:
        if str(extension.get("type", "")).lower() == "jwt":
            configuration = _jwt_configuration(
                extension.get("jwtConfiguration"), extension.get("identitySource"), resolver
            )
            return RouteAuthorization("JWT", str(name), configuration, scopes)
        return RouteAuthorization("CUSTOM", str(name), scopes=scopes)
    return _named_authorization(str(name), scopes, authorizers, resolver, where)


def _named_authorization(
    name: str,
    scopes: tuple[str, ...],
    authorizers: Mapping[str, Any],
    resolver: IntrinsicResolver,
    where: str,
) -> RouteAuthorization:
    """SAM's reserved names (AWS_IAM, NONE) or one of the API's Auth.Authorizers."""
    if name == NO_AUTHORIZER:
        return NO_AUTHORIZATION
    if name == IAM_AUTHORIZER:
        return RouteAuthorization("AWS_IAM", IAM_AUTHORIZER)
    definition = authorizers.get(name)
    if not isinstance(definition, dict):
        known = ", ".join([IAM_AUTHORIZER, NO_AUTHORIZER, *authorizers])
        raise TemplateError(
            f"{where}: authorizer {name!r}: expected one of {known} (the API's Auth.Authorizers)"
        )
    scopes = scopes or _strings(resolver.resolve_value(definition.get("AuthorizationScopes")))
    if "JwtConfiguration" in definition:
        configuration = _jwt_configuration(
            definition["JwtConfiguration"], definition.get("IdentitySource"), resolver
        )
        return RouteAuthorization("JWT", name, configuration, scopes)
    return RouteAuthorization("CUSTOM", name, scopes=scopes)


def _jwt_configuration(
    configuration: Any, identity_source: Any, resolver: IntrinsicResolver
) -> JwtConfiguration:
    """SAM's JwtConfiguration and OpenAPI's jwtConfiguration share the keys issuer and audience."""
    settings = _mapping(configuration)
    try:
        issuer: str | None = resolver.resolve(settings["issuer"]) if "issuer" in settings else None
    except UnresolvedIntrinsicError:
        issuer = None
    try:
        audience = _strings(resolver.resolve_value(settings.get("audience")))
    except UnresolvedIntrinsicError:
        audience = ()
    sources = _strings(resolver.resolve_value(identity_source))
    return JwtConfiguration(
        issuer=issuer or None,
        audience=tuple(a for a in audience if a),
        identity_sources=tuple(
            part.strip() for source in sources for part in source.split(",") if part.strip()
        )
        or (DEFAULT_IDENTITY_SOURCE,),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> tuple[str, ...]:
    """A scalar or a list as strings; absent is empty."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(scalar_text(item) for item in value)
    return (scalar_text(value),)
