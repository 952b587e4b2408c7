"""Platform code shared by the API (``api/``) and the workers (``worker/``).

Settings, the database schema and session, the storage backends, the Celery app, and the
service functions that own every query (``cases``) and every step of the analysis fan-out
(``analysis``). Routes and tasks stay thin and call into here.
"""
