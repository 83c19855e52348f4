"""Validating with a DRF serializer without building its fields on every request.

A serializer instance deep-copies every declared field, nested serializers included, the first
time it validates: for the decision create body that was a tenth of a create's CPU. The fields
hold no per-request state, so validated instances are kept and reused. Through the public
is_valid(), so errors come out exactly as a fresh serializer's would.
"""

from rest_framework import serializers


class ReusedSerializer:
    """serializer_class(data=data).is_valid(raise_exception=True), then its validated_data; the
    instances are pooled, any thread may take one (list.pop and append are atomic in CPython)."""

    def __init__(self, serializer_class: type[serializers.Serializer]):
        self._serializer_class = serializer_class
        self._idle: list[serializers.Serializer] = []

    def validated_data(self, data) -> dict:
        try:
            serializer = self._idle.pop()
        except IndexError:
            serializer = self._serializer_class()
        try:
            # What __init__(data=…) sets, and what is_valid() and .data keep of the last call.
            serializer.initial_data = data
            for kept in ("_validated_data", "_errors", "_data"):
                serializer.__dict__.pop(kept, None)
            serializer.is_valid(raise_exception=True)
            return serializer.validated_data
        finally:
            self._idle.append(serializer)
