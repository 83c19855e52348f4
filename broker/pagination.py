from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination


class StrictCursorPagination(CursorPagination):
    """Cursor pagination where a bad cursor is a 400 (DRF answers 404), including one that
    decodes fine but whose position the query could not use: subclasses say what a valid
    position is in check_position (raise ValueError)."""

    page_size_query_param = "limit"

    def check_position(self, position: str) -> None:
        raise NotImplementedError

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                # The query's string; DRF's stubs call Cursor.position an int.
                self.check_position(cursor.position)  # type: ignore[arg-type]
        except Exception:  # DRF's NotFound, a bad position: a bad parameter either way
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None
        return cursor


def page_schema(name: str, item) -> serializers.Serializer:
    """The OpenAPI shape of one cursor page of `item`s: next, previous, results."""
    return inline_serializer(
        name,
        fields={
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )
