"""`python -m adapter` is `vhs-sync`."""

from adapter.cli import app

app()
