"""The HTTP transport: routes over Powertools' resolver, request bodies, the OpenAPI document and docs.

The wire types and codecs the routes speak live in `maas.protocol`. Import the module you need directly,
so a function loads only what it serves.
"""
