from django.db import connections, router

from organizations.models import ApiKey, Organization
from organizations.services import api_key_hash


class _ActiveKeyQuery:
    """`ApiKey.objects.select_related("organization").filter(key_hash=…, revoked_at__isnull=True)`,
    compiled by the ORM once per process and database, then run as plain SQL.

    Every API request looks its key up, and compiling that query (and `.first()`'s ORDER BY)
    cost most of the lookup's CPU. What is kept is only the compiled text: the rows are read
    on every call, so a revoked key fails on the next request and the organization (its
    settings_version) is as fresh as the ORM would read it. The SQL is the ORM's own, its
    values go through the ORM's converters and become instances with Model.from_db."""

    _HASH_PLACEHOLDER = "\x00api key hash\x00"

    def __init__(self, alias: str) -> None:
        self.alias = alias
        queryset = (
            ApiKey.objects.using(alias)
            .select_related("organization")
            .filter(key_hash=self._HASH_PLACEHOLDER, revoked_at__isnull=True)
        )
        compiler = queryset.query.get_compiler(alias)
        self.sql, params = compiler.as_sql()
        if list(params) != [self._HASH_PLACEHOLDER]:  # the hash must be the only value bound
            raise RuntimeError(f"unexpected parameters for the API-key query: {params!r}")
        self.converters = list(compiler.get_converters([column for column, _, _ in compiler.select]).items())
        key_info = compiler.klass_info
        (organization_info,) = key_info["related_klass_infos"]
        self.key_columns = self._columns(compiler, key_info)
        self.organization_columns = self._columns(compiler, organization_info)
        self.set_organization = organization_info["local_setter"]

    @staticmethod
    def _columns(compiler, klass_info) -> tuple[slice, list[str]]:
        indexes = klass_info["select_fields"]
        if indexes != list(range(indexes[0], indexes[-1] + 1)):
            raise RuntimeError("the API-key query's columns are not contiguous")
        names = [compiler.select[i][0].target.attname for i in indexes]
        return slice(indexes[0], indexes[-1] + 1), names

    def fetch(self, key_hash: str) -> ApiKey | None:
        connection = connections[self.alias]  # this thread's
        with connection.cursor() as cursor:
            cursor.execute(self.sql, (key_hash,))
            row = cursor.fetchone()  # key_hash is unique: one row at most
        if row is None:
            return None
        row = list(row)
        for index, (converters, column) in self.converters:  # as SQLCompiler.apply_converters
            for convert in converters:
                row[index] = convert(row[index], column, connection)
        key_slice, key_names = self.key_columns
        organization_slice, organization_names = self.organization_columns
        key = ApiKey.from_db(self.alias, key_names, row[key_slice])
        organization = Organization.from_db(self.alias, organization_names, row[organization_slice])
        self.set_organization(key, organization)
        return key


_active_key_queries: dict[tuple[str, str], _ActiveKeyQuery] = {}


def api_key_find_active(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key with this raw value, its organization loaded with it: one indexed query."""
    alias = router.db_for_read(ApiKey)
    cache_key = (alias, connections[alias].vendor)
    query = _active_key_queries.get(cache_key)
    if query is None:
        query = _active_key_queries[cache_key] = _ActiveKeyQuery(alias)
    return query.fetch(api_key_hash(raw_key))
