"""Exports of a finished result: JSON (stored bytes, or rounded), CSV and the reference library's file.

Routes take `ExportOptionsDep` (format from `?format=` or `Accept`, and `precision`) and answer with
`export_response(result, options.format, precision=options.precision, max_bytes=..., request=...)`.
"""

from service.exports.context_export import context_export_response
from service.exports.negotiation import ExportOptions, ExportOptionsDep, export_options, negotiate
from service.exports.response import export_response

__all__ = [
    "ExportOptions",
    "ExportOptionsDep",
    "context_export_response",
    "export_options",
    "export_response",
    "negotiate",
]
