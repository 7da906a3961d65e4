"""User-facing interfaces: the command line (and later a server), thin callers of the Python API."""
