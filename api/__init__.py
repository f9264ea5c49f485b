"""The REST API: it writes desired Task records (spec, cancellation requests) and reads them.

It never talks to the container engine and never imports `controller/`; the controller reads
what this package writes. `api.app.create_app` builds the FastAPI application.
"""
