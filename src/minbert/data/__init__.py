"""Course data: readers (typed rows + bad-row report) and batching (token cache, length buckets)."""
from ..errors import DataError
from .readers import BadRow, Example, ReadReport, read_examples

__all__ = ["BadRow", "DataError", "Example", "ReadReport", "read_examples"]
