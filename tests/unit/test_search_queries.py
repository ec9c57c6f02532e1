"""The SQL of search_service/queries.sql: tenant-scoped, bound parameters, listings kept in step."""

from __future__ import annotations

import re

from duetime.sql import load_queries
from search_service.filters import JobsQuery, RunsQuery
from search_service.listing import SORTS, jobs_statement, runs_statement

QUERIES = load_queries("search_service")
JOB_LISTINGS = [sort.query for sort in SORTS.values()] + [
    sort.labelled for sort in SORTS.values() if sort.labelled]


def _filters(sql: str) -> list[str]:
    """The WHERE lines of a listing, without its keyset condition (the last one)."""
    code = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    where = code[code.index("WHERE"):code.index("ORDER BY")]
    conditions = re.split(r"\n  AND ", where)
    return conditions[:-1]


def _parameters(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


def test_every_sort_has_a_query() -> None:
    assert set(JOB_LISTINGS) <= set(QUERIES)
    assert len(set(JOB_LISTINGS)) == len(JOB_LISTINGS)


def test_job_listings_share_their_filters_exactly() -> None:
    first = _filters(QUERIES[JOB_LISTINGS[0]])
    assert len(first) == 12  # tenant and the 11 optional filters
    for name in JOB_LISTINGS[1:]:
        assert _filters(QUERIES[name]) == first, name


def test_every_query_is_scoped_to_a_tenant() -> None:
    for name, sql in QUERIES.items():
        assert re.search(r"\btenant = \$\d+", sql), name


def test_parameters_are_numbered_and_match_the_arguments() -> None:
    args = jobs_statement(JobsQuery(), "t").args
    for name in JOB_LISTINGS:
        assert _parameters(QUERIES[name]) == set(range(1, len(args) + 1)), name
    runs_args = runs_statement(RunsQuery(), "t").args
    assert _parameters(QUERIES["list_runs"]) == set(range(1, len(runs_args) + 1))


def test_no_query_is_a_format_string() -> None:
    for name, sql in QUERIES.items():
        assert not re.search(r"%s|%\(|\{[a-z_]*\}", sql), name


def test_next_run_at_is_only_compared_through_the_indexed_expression() -> None:
    # jobs_tenant_next_run indexes COALESCE(next_run_at, 'infinity'); a bare comparison would
    # not use it.
    for name in JOB_LISTINGS:
        bare = re.findall(r"(?<!COALESCE\()next_run_at\s*[<>]", QUERIES[name])
        assert not bare, name
