"""The operator console: the browser pages ``openfrt serve`` serves beside the REST API.

See :mod:`openfrt.web.console` for how it is built and why.
"""
