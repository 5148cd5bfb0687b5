"""Which Info Mart tables need fresh planner statistics, partitioned tables included.

PostgreSQL (15, 16) keeps change counters (``pg_stat_user_tables``) for the *partitions* only: a
partitioned parent such as ``interaction_fact`` always shows 0 changes, and autovacuum never
ANALYZEs it. Yet the planner estimates joins against the parent as a whole (``Append`` of its
partitions) from the parent's own "inherited" statistics; without them it falls back to default
selectivities. So two questions get two answers here:

* :func:`changed_leaves` -- the plain tables and partitions (leaves) whose own counters say they
  changed enough since their last ANALYZE; a partitioned name stands for all its leaves.
* :func:`stale_parents` -- the partitioned tables whose leaves changed enough since *we* last
  ANALYZEd the parent. The counters we compare are the leaves' cumulative ``n_tup_ins + n_tup_upd +
  n_tup_del`` (never reset by ANALYZE), against a snapshot kept in ``ctl_stats_parent`` (migration
  011) when the parent was analyzed; a partition created, dropped or attached since also counts.

``ANALYZE <parent>`` samples the parent *and* re-analyzes every partition (there is no ``ANALYZE
ONLY`` before PostgreSQL 17), so it costs about one ANALYZE per partition: parents get a higher
threshold (:data:`PARENT_FRACTION`, the fraction autovacuum uses for plain tables by default) than
leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

PARENT_FRACTION = 0.10
"""A parent is re-analyzed when its leaves changed by this fraction of its rows since the last time."""
PARENT_MIN_ROWS = 50

_LEAVES = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze
  FROM pg_stat_user_tables s
 WHERE s.schemaname = 'public'
   AND (%(names)s::text[] IS NULL OR s.relid IN (
        SELECT l.relid FROM unnest(%(names)s::text[]) n(name)
               CROSS JOIN LATERAL pg_partition_tree(to_regclass('public.' || quote_ident(n.name))) l
         WHERE l.isleaf))
   AND NOT EXISTS (SELECT 1 FROM pg_partitioned_table p WHERE p.partrelid = s.relid)
   AND (s.n_mod_since_analyze >= greatest(%(amin)s, %(afrac)s * greatest(s.n_live_tup, 0))
        OR s.n_dead_tup >= greatest(%(vmin)s, %(vfrac)s * greatest(s.n_live_tup, 0)))
 ORDER BY s.n_mod_since_analyze + s.n_dead_tup DESC, s.relname
"""

_PARENTS = """
SELECT p.relname, greatest(p.reltuples, 0)::bigint AS reltuples,
       coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::bigint AS changes,
       count(*) FILTER (WHERE l.isleaf)::int AS partitions,
       st.changes AS last_changes, st.partitions AS last_partitions
  FROM pg_partitioned_table pt
  JOIN pg_class p ON p.oid = pt.partrelid
  JOIN pg_namespace n ON n.oid = p.relnamespace AND n.nspname = 'public'
  CROSS JOIN LATERAL pg_partition_tree(p.oid) l
  LEFT JOIN pg_stat_user_tables s ON s.relid = l.relid AND l.isleaf
  LEFT JOIN ctl_stats_parent st ON st.table_name = p.relname
 WHERE NOT p.relispartition
 GROUP BY p.relname, p.reltuples, st.changes, st.partitions
 ORDER BY p.relname
"""


@dataclass(frozen=True)
class Leaf:
    name: str
    live: int
    dead: int
    modified: int


@dataclass(frozen=True)
class Parent:
    name: str
    rows: int
    changes: int
    partitions: int
    changed_since: int | None
    """Leaf changes since the parent was last analyzed here (None: never)."""


def changed_leaves(conn: psycopg.Connection, names: list[str] | None = None, *, analyze_min: int = 50,
                   analyze_fraction: float = 0.02, vacuum_min: int = 1000,
                   vacuum_fraction: float = 0.10) -> list[Leaf]:
    """Plain tables and partitions of ``public`` (or of ``names``: tables, a partitioned one meaning
    all its partitions) whose modifications since their last ANALYZE, or whose dead rows, reach the
    thresholds; busiest first."""
    rows = conn.execute(_LEAVES, {"names": names, "amin": analyze_min, "afrac": analyze_fraction,
                                  "vmin": vacuum_min, "vfrac": vacuum_fraction}).fetchall()
    return [Leaf(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


def stale_parents(conn: psycopg.Connection, *, fraction: float = PARENT_FRACTION,
                  min_rows: int = PARENT_MIN_ROWS) -> list[Parent]:
    """Partitioned tables of ``public`` never analyzed here, with partitions added or dropped since,
    or whose leaves changed by ``max(min_rows, fraction x rows)`` since."""
    out = []
    for name, rows, changes, parts, last_changes, last_parts in conn.execute(_PARENTS).fetchall():
        since = None if last_changes is None else abs(int(changes) - int(last_changes))
        if since is None or parts != last_parts or since >= max(min_rows, fraction * rows):
            out.append(Parent(name, int(rows), int(changes), int(parts), since))
    return out


def analyze_parent(conn: psycopg.Connection, parent: Parent) -> None:
    """ANALYZE a partitioned table (and with it every partition) and remember the leaf counters it
    saw, so the next :func:`stale_parents` measures change from here. Autocommit connection."""
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(parent.name)))
    conn.execute(
        """INSERT INTO ctl_stats_parent (table_name, analyzed_at, changes, partitions)
           VALUES (%s, now(), %s, %s)
           ON CONFLICT (table_name) DO UPDATE
              SET analyzed_at = excluded.analyzed_at, changes = excluded.changes, partitions = excluded.partitions""",
        (parent.name, parent.changes, parent.partitions))
