"""``python -m openfrt`` is the same as the ``openfrt`` command."""

from openfrt.cli.main import app

if __name__ == "__main__":  # not when a camera's process (multiprocessing's "spawn") imports it
    app(prog_name="openfrt")
