"""The ``openfrt`` command line."""
