"""The web console `ods serve` answers at ``/``: server-rendered pages over the API's own routes."""
