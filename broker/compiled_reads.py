"""Reads the ORM compiles once per process, for the hottest queries.

Compiling a query is most of what a small read costs the ORM in CPU: for the API-key lookup
of every request and the delivery an outbox attempt claims (four tables joined), more than
running it. A CompiledRead keeps the ORM's own SQL for a queryset built with placeholder
values and turns each row into model instances as iterating the queryset would: the same
converters, Model.from_db, and Django's RelatedPopulator for select_related. Only the SQL
text is kept: every call reads the database, so nothing it returns is stale.
"""

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

M = TypeVar("M", bound=Model)


class _Compiled:
    def __init__(self, queryset: QuerySet, placeholders: tuple) -> None:
        self.alias = queryset.db
        compiler = queryset.query.get_compiler(self.alias)
        self.sql, params = compiler.as_sql()
        if sorted(map(repr, params)) != sorted(map(repr, placeholders)):
            raise RuntimeError(f"every value of the query must be a placeholder, once: {params!r}")
        self.slots = [placeholders.index(param) for param in params]
        select, klass_info = compiler.select, compiler.klass_info
        if compiler.annotation_col_map:
            raise RuntimeError("annotations are not supported")
        self.converters = list(compiler.get_converters([column for column, _, _ in select]).items())
        fields = klass_info["select_fields"]
        self.model = klass_info["model"]
        self.columns = slice(fields[0], fields[-1] + 1)
        self.init_list = [select[index][0].target.attname for index in fields]
        # (Django 5.2's signature; the stubs have a later one's.)
        self.related = get_related_populators(klass_info, select, self.alias)  # type: ignore[call-arg]

    def instances(self, values: tuple) -> list[Model]:
        connection = connections[self.alias]  # this thread's
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [values[slot] for slot in self.slots])
            rows = cursor.fetchall()
        return [self._instance(list(row), connection) for row in rows]

    def _instance(self, row: list, connection) -> Model:
        for index, (converters, column) in self.converters:  # as SQLCompiler.apply_converters
            for convert in converters:
                row[index] = convert(row[index], column, connection)
        instance = self.model.from_db(self.alias, self.init_list, row[self.columns])
        for populator in self.related:  # as ModelIterable does for select_related
            populator.populate(row, instance)
        return instance


class CompiledRead(Generic[M]):
    """`build(*placeholders)`, a queryset, compiled once per database; `all(*values)` runs it
    with the values in their places. Placeholders must be values the query binds as they are,
    each once (a filter value, not part of a LIKE pattern)."""

    def __init__(self, model: type[M], build: Callable[..., QuerySet], *placeholders: Any) -> None:
        self.model, self.build, self.placeholders = model, build, placeholders
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def all(self, *values: Any) -> list[M]:
        alias = router.db_for_read(self.model)
        key = (alias, connections[alias].vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(
                self.build(*self.placeholders).using(alias), self.placeholders
            )
        return cast(list[M], compiled.instances(values))

    def one(self, *values: Any) -> M | None:
        """The instance, or None: for a lookup by a unique value (no LIMIT is added)."""
        found = self.all(*values)
        return found[0] if found else None
