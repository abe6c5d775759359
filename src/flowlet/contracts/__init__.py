"""Endpoint contracts: JSON Schemas for what an endpoint accepts and answers, and OpenAPI.

``schemas`` reads and bundles schema files, ``validate`` compiles a schema and words the
problems, ``coerce`` types query/header text and fills defaults, ``contract`` is the config
model and the compiled request-time stage, ``openapi`` describes a workspace.
"""
