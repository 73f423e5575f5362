"""Content-addressed artifacts in DVC's remote layout, in a local directory or on S3."""
