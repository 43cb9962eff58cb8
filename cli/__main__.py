"""`python -m cli` runs the same commands as the `ess` console script."""

from cli.main import app

app(prog_name="ess")
