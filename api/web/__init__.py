"""The newsroom desk: the web page people use, served by the API at ``/`` in both setups.

Server-rendered Jinja2 pages over the same service functions as the JSON API, with small
scripts as static files (no build step, no inline script: the Content-Security-Policy
forbids it). A person signs in with an API key, exchanged for a server-side session
(:mod:`service.web_sessions`); the page's scripts call the JSON API (uploads, case creation,
status) with that session's cookie and CSRF token. Everything a file brings (names, EXIF,
XMP, C2PA text) is escaped by the templates' autoescaping and inserted by the scripts only
as text.
"""
