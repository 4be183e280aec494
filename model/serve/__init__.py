"""Every entry point that classifies scans: the one pipeline (group -> open -> assess), the REST API, the
command line and the batch helpers."""
