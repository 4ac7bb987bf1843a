"""The only package that talks to the Kubernetes API server.

Everything here speaks plain JSON dicts on hot paths; the rest of wfsched never imports the
``kubernetes`` client.
"""
