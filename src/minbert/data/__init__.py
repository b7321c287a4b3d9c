"""Course data: readers (typed rows + bad-row report) and batching (token cache, length buckets)."""
from .readers import BadRow, DataError, Example, ReadReport, read_examples

__all__ = ["BadRow", "DataError", "Example", "ReadReport", "read_examples"]
