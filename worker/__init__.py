"""Celery worker: thin tasks over :mod:`service.analysis`."""
