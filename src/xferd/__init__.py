"""xferd: a multi-protocol file-transfer server over one virtual filesystem."""

__version__ = "0.1.0"
