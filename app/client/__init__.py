"""The `amishare` command-line client: HTTP only (httpx), no server code imported."""
