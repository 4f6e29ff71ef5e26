"""The HTTP edge: schemas, routes, the error table, security and request middleware.

Knows nothing about ONNX: talks to the engine through the registry's schedulers.
"""
