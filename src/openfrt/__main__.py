"""``python -m openfrt`` is the same as the ``openfrt`` command."""

from openfrt.cli.main import app

app(prog_name="openfrt")
