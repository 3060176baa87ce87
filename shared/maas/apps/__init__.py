"""Composition roots: one module per Lambda function, each wiring its edge to the services it needs.

A function's `app.py` imports exactly one of them, so it loads only what that function serves.
"""
