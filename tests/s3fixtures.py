"""S3 fixtures: moto in-process and as a real HTTP server on 127.0.0.1."""
