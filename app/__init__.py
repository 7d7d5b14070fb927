"""Postroom: desktop console for a self-hosted bulk-email platform."""

__version__ = "0.1.0"
