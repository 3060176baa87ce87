"""What the tests stand on: the repository's paths, fake AWS (moto in-process and as a server), the functions
imported as Lambda imports them, API Gateway events built by maas.local's own builder, captured JSON logs,
tiny real models and table-driven cases. Conftests only declare fixtures over these; tests import from here.
"""
