"""Inserts the ORM compiles once per process, for the rows every create writes.

`bulk_create` builds its INSERT afresh on every call: quoting each column, a placeholder per
value, the RETURNING clause, two nested atomic blocks. For the four tables a create writes
(the decision, its requests, their deliveries, the audit entries) that cost more CPU than
preparing the values and running the statement. A CompiledInsert asks the ORM for the SQL of
the first insert of each shape (the row count and which values are the database's default)
and keeps it; every insert still prepares its values as the ORM does (`pre_save`,
`get_db_prep_save`) and sets what the database returns (its id, `db_default` columns) as
`bulk_create` would. Anything else, such as a value that is an expression or a database that
cannot return rows from a bulk insert, goes through `bulk_create` itself.
"""

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Generic, TypeVar

from django.db import connections, router
from django.db.models import AutoField, Model
from django.db.models.expressions import DatabaseDefault
from django.db.models.sql import InsertQuery

M = TypeVar("M", bound=Model)

# Shapes with more rows go through bulk_create: one compile is little beside such an insert,
# and the cache stays small.
MAX_COMPILED_ROWS = 32

_Shape = tuple[str, tuple[tuple[bool, ...], ...]]  # (alias, which values are DEFAULT, per row)


class _Compiled:
    def __init__(self, model: type[Model], fields: list, objs: Sequence[Model], alias: str) -> None:
        returning = model._meta.db_returning_fields
        query = InsertQuery(model)
        query.insert_values(fields, list(objs), raw=True)  # pre_save has run: no second auto_now
        compiler = query.get_compiler(using=alias)
        compiler.returning_fields = returning
        [(self.sql, params)] = compiler.as_sql()
        values = sum(not isinstance(getattr(obj, f.attname), DatabaseDefault) for obj in objs for f in fields)
        # PostgreSQL's compiler sends several literal rows as one array per column (UNNEST).
        self.by_column = (
            len(objs) > 1
            and len(params) == len(fields)
            and all(isinstance(column, list) and len(column) == len(objs) for column in params)
        )
        if not self.by_column and len(params) != values:  # a field with its own placeholder, …
            raise RuntimeError(f"{model.__name__}: the insert's values are not one placeholder each")
        self.returning = returning
        self.converters = list(
            compiler.get_converters([field.get_col(model._meta.db_table) for field in returning]).items()
        )

    def params(self, fields: list, rows: list[list], connection) -> list:
        """The rows' values prepared as SQLInsertCompiler.prepare_value does, laid out as the
        compiled SQL takes them: row after row, or one array per column."""
        prepared = [
            [
                field.get_db_prep_save(value, connection)
                for field, value in zip(fields, row, strict=True)
                if not isinstance(value, DatabaseDefault)
            ]
            for row in rows
        ]
        return (
            [list(column) for column in zip(*prepared, strict=True)]
            if self.by_column
            else list(chain.from_iterable(prepared))
        )

    def returned(self, rows: list, connection) -> list:
        if not self.converters:
            return rows
        rows = [list(row) for row in rows]
        for row in rows:
            for index, (converters, column) in self.converters:  # as SQLCompiler.apply_converters
                for convert in converters:
                    row[index] = convert(row[index], column, connection)
        return rows


class CompiledInsert(Generic[M]):
    """`create(objs)`: `bulk_create(objs)` for `model`, with its SQL compiled once per shape."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        opts = model._meta
        self._fields_with_pk = [f for f in opts.concrete_fields if not f.generated]
        self._fields_without_pk = [f for f in self._fields_with_pk if not isinstance(f, AutoField)]
        self._compiled: dict[_Shape, _Compiled] = {}

    def create(self, objs: Iterable[M]) -> list[M]:
        objs = list(objs)
        if not objs:
            return objs
        alias = router.db_for_write(self.model)
        connection = connections[alias]
        prepared = self._values(objs, connection)
        if prepared is None:
            return self.model._default_manager.using(alias).bulk_create(objs)
        fields, rows = prepared
        shape = (alias, tuple(tuple(isinstance(value, DatabaseDefault) for value in row) for row in rows))
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = self._compiled[shape] = _Compiled(self.model, fields, objs, alias)
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, compiled.params(fields, rows, connection))
            returned = (
                compiled.returned(cursor.fetchall(), connection) if compiled.returning else [()] * len(objs)
            )
        pk, with_pk = self.model._meta.pk, fields is self._fields_with_pk
        for obj, results in zip(objs, returned, strict=True):  # as bulk_create sets what came back
            for result, field in zip(results, compiled.returning, strict=True):
                if field is not pk or not with_pk:
                    setattr(obj, field.attname, result)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = alias
        return objs

    def _values(self, objs: list[M], connection) -> tuple[list, list[list]] | None:
        """(the columns, each row's values before preparing) when the compiled path can insert
        them; None for what only bulk_create does (expressions, a mix of set and unset ids)."""
        features = connection.features
        if len(objs) > MAX_COMPILED_ROWS or not (
            features.can_return_rows_from_bulk_insert and features.supports_default_keyword_in_bulk_insert
        ):
            return None
        for obj in objs:  # as QuerySet._prepare_for_bulk_create
            if obj.pk is None:
                obj.pk = obj._meta.pk.get_pk_value_on_save(obj)
            obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
        with_pk = {obj.pk is not None for obj in objs}
        if len(with_pk) > 1:
            return None
        fields = self._fields_with_pk if with_pk.pop() else self._fields_without_pk
        rows = [[field.pre_save(obj, True) for field in fields] for obj in objs]  # as pre_save_val
        if any(_is_expression(value) for row in rows for value in row):
            return None
        return fields, rows


def _is_expression(value) -> bool:
    """An expression only the ORM compiles; the database's default is a DEFAULT of our SQL."""
    return hasattr(value, "resolve_expression") and not isinstance(value, DatabaseDefault)
