"""FastAPI front end: thin routes over :mod:`service`; OpenAPI at ``/docs``."""
