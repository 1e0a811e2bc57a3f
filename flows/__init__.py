"""Kraftsamling Publishing: Prefect flows for the newsletter and the Digitalsamtal podcast."""

__version__ = "0.1.0"
