"""vhs-sync: the enrollment sync adapter of one adult-education school."""

__version__ = "0.1.0"
