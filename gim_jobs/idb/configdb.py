"""Configuration rows (ICON_CFG: gc_* / gcx_*) of the simulated center.

Written once per IDB and reused: every insert is idempotent (existing rows are kept as they are),
agents are only ever added (when the offered load needs more) or deleted by setting deleted_ts.
``sim.agent`` remembers each simulated agent's media and skills so a later run rebuilds the same
roster from the database.

Fixed ids: tenant 1; routing point 101 (dn 5000); queues per ``SimConfig.queues`` (201.. ACD,
301.. virtual, 401.. interaction queues); trunk 601; agent extensions 100000 + agent_id (dn
20000 + agent_id); skills and agent groups ("<skill> Team", group_type 1) numbered in order of
first use; queue groups 9001 "Voice Queues" and 9002 "Digital Queues" (group_type 2).
"""

from __future__ import annotations

import math
import random

import psycopg

from gim_jobs.idb.config import (
    DN_EXTENSION,
    DN_ROUTING_POINT,
    DN_TRUNK,
    ROUTING_POINT_DN,
    ROUTING_POINT_ID,
    TRUNK_DN,
    TRUNK_ID,
    VOICE,
    AgentSpec,
    SimConfig,
)
from gim_jobs.idb.model import agent_dn, agent_endpoint_id

VOICE_SWITCH, MM_SWITCH = "SIP_Switch", "InteractionServer"
QUEUE_GROUPS = {VOICE: (9001, "Voice Queues"), "*": (9002, "Digital Queues")}

_FIRST = ("Alex", "Sam", "Maria", "Chen", "Priya", "Jonas", "Fatima", "Luca", "Ana", "Kenji", "Olga", "Tom",
          "Ines", "Omar", "Sofia", "Noah", "Lena", "Ravi", "Eva", "Marco")
_LAST = ("Smith", "Garcia", "Novak", "Kim", "Patel", "Meyer", "Haddad", "Rossi", "Silva", "Tanaka", "Ivanova",
         "Brown", "Dubois", "Khan", "Lopez", "Berg", "Fischer", "Rao", "Costa", "Conti")


def _switch(media: str) -> str:
    return VOICE_SWITCH if media == VOICE else MM_SWITCH


def ensure_base_config(conn: psycopg.Connection, cfg: SimConfig, created_ts: int) -> dict[str, int]:
    """Tenant, skills, groups, routing point, trunk and queues; returns skill name -> skill id."""
    cur = conn.cursor()
    cur.execute("INSERT INTO gc_tenant (id, name, created_ts) VALUES (1, 'Environment', %s) "
                "ON CONFLICT (id) DO NOTHING", (created_ts,))
    skills = dict(cur.execute("SELECT name, id FROM gc_skill").fetchall())
    groups = dict(cur.execute("SELECT name, id FROM gc_group").fetchall())
    next_id = max(list(skills.values()) + list(v for v in groups.values() if v < 9000) + [0]) + 1
    for q in cfg.queues:
        if q.skill not in skills:
            skills[q.skill] = sid = next_id
            next_id += 1
            cur.execute("INSERT INTO gc_skill (id, name, created_ts) VALUES (%s, %s, %s)", (sid, q.skill, created_ts))
        team = f"{q.skill} Team"
        if team not in groups:
            gid = skills[q.skill]
            while gid in groups.values():
                gid += 1000
            groups[team] = gid
            cur.execute("INSERT INTO gc_group (id, name, group_type, created_ts) VALUES (%s, %s, 1, %s)",
                        (gid, team, created_ts))
    for gid, name in QUEUE_GROUPS.values():
        cur.execute("INSERT INTO gc_group (id, name, group_type, created_ts) VALUES (%s, %s, 2, %s) "
                    "ON CONFLICT (id) DO NOTHING", (gid, name, created_ts))
    endpoints = [(ROUTING_POINT_ID, ROUTING_POINT_DN, DN_ROUTING_POINT, VOICE_SWITCH),
                 (TRUNK_ID, TRUNK_DN, DN_TRUNK, VOICE_SWITCH)]
    endpoints += [(q.endpoint_id, q.dn, q.dn_type, _switch(q.media)) for q in cfg.queues]
    for ep, dn, dn_type, switch in endpoints:
        cur.execute("INSERT INTO gc_endpoint (id, dn, dn_type, switch_name, created_ts) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING", (ep, dn, dn_type, switch, created_ts))
    for q in cfg.queues:
        gid = QUEUE_GROUPS[VOICE if q.media == VOICE else "*"][0]
        cur.execute("INSERT INTO gcx_group_endpoint (group_id, endpoint_id, created_ts) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING", (gid, q.endpoint_id, created_ts))
    return skills


def load_agents(conn: psycopg.Connection) -> list[AgentSpec]:
    """The simulated agents not deleted in configuration, in roster order (agent id)."""
    rows = conn.execute(
        "SELECT s.agent_id, s.media_type, s.skills, s.endpoint_id FROM sim.agent s "
        "JOIN gc_agent g ON g.id = s.agent_id WHERE g.deleted_ts IS NULL AND s.deleted_ts IS NULL "
        "ORDER BY s.agent_id").fetchall()
    return [AgentSpec(r[0], r[1], tuple(r[2]), r[3], agent_dn(r[0])) for r in rows]


def next_agent_id(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM gc_agent").fetchone()[0])


def _primary_skills(cfg: SimConfig, media: str, n: int) -> list[str]:
    """Smooth weighted round robin over the media's queue skills: every prefix of the roster covers
    the skills in proportion to their queue weights."""
    weights: dict[str, float] = {}
    for q in cfg.queues:
        if q.media == media:
            weights[q.skill] = weights.get(q.skill, 0.0) + q.weight
    if not weights:
        return [media.capitalize()] * n
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0.0)
    out = []
    for _ in range(n):
        for s, w in weights.items():
            current[s] += w
        best = max(current, key=lambda s: current[s])
        current[best] -= total
        out.append(best)
    return out


def new_agent_specs(cfg: SimConfig, media: str, have: int, n: int, first_id: int) -> list[AgentSpec]:
    """``n`` more agents for a media pool that has ``have``; ids from ``first_id``."""
    primaries = _primary_skills(cfg, media, have + n)[have:]
    skills_all = list(dict.fromkeys(q.skill for q in cfg.queues if q.media == media))
    out = []
    for k, primary in enumerate(primaries):
        aid = first_id + k
        rng = random.Random(cfg.seed * 1_000_033 + aid)
        extra = [s for s in skills_all if s != primary and rng.random() < 0.35]
        out.append(AgentSpec(aid, media, (primary, *extra), agent_endpoint_id(aid), agent_dn(aid)))
    return out


def insert_agents(conn: psycopg.Connection, specs: list[tuple[AgentSpec, int]], skill_ids: dict[str, int]) -> None:
    """gc_agent, its extension (gc_endpoint), team membership and skill levels, and sim.agent."""
    if not specs:
        return
    cur = conn.cursor()
    groups = dict(cur.execute("SELECT name, id FROM gc_group WHERE group_type = 1").fetchall())
    agents, eps, members, levels, sims = [], [], [], [], []
    for spec, ts in specs:
        aid = spec.agent_id
        agents.append((aid, f"E{aid:05d}", f"agent{aid}", _FIRST[aid % len(_FIRST)],
                       _LAST[(aid // len(_FIRST)) % len(_LAST)], ts))
        eps.append((spec.endpoint_id, spec.dn or agent_dn(aid), DN_EXTENSION, _switch(spec.media), ts))
        team = groups.get(f"{spec.skills[0]} Team")
        if team is not None:
            members.append((team, aid, ts))
        for i, s in enumerate(spec.skills):
            if s in skill_ids:
                levels.append((aid, skill_ids[s], 9 - min(i, 1) * 4 - (aid + i) % 3, ts))
        sims.append((aid, spec.media, list(spec.skills), spec.endpoint_id, ts))
    cur.executemany("INSERT INTO gc_agent (id, employee_id, user_name, first_name, last_name, created_ts) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING", agents)
    cur.executemany("INSERT INTO gc_endpoint (id, dn, dn_type, switch_name, created_ts) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING", eps)
    cur.executemany("INSERT INTO gcx_group_agent (group_id, agent_id, created_ts) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING", members)
    cur.executemany("INSERT INTO gcx_skill_level (agent_id, skill_id, level, created_ts) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", levels)
    cur.executemany("INSERT INTO sim.agent (agent_id, media_type, skills, endpoint_id, created_ts) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent_id) DO NOTHING", sims)


def delete_agents(conn: psycopg.Connection, deletions: list[tuple[int, int]]) -> None:
    """Configuration delete: deleted_ts set by UPDATE (so gsys_useq advances) on the agent, its
    extension, team membership and skill levels."""
    if not deletions:
        return
    cur = conn.cursor()
    rows = [(ts, aid) for aid, ts in deletions]
    cur.executemany("UPDATE gc_agent SET deleted_ts = %s, state = 2 WHERE id = %s AND deleted_ts IS NULL", rows)
    cur.executemany("UPDATE gcx_group_agent SET deleted_ts = %s WHERE agent_id = %s AND deleted_ts IS NULL", rows)
    cur.executemany("UPDATE gcx_skill_level SET deleted_ts = %s WHERE agent_id = %s AND deleted_ts IS NULL", rows)
    cur.executemany("UPDATE gc_endpoint SET deleted_ts = %s WHERE id = %s AND deleted_ts IS NULL",
                    [(ts, agent_endpoint_id(aid)) for aid, ts in deletions])
    cur.executemany("UPDATE sim.agent SET deleted_ts = %s WHERE agent_id = %s", rows)


def roster_target(cfg: SimConfig, media: str, peak_required: int) -> int:
    """Agents a pool should have: the configured minimum (by media share), or with ``auto_staff``
    enough for the peak hour plus 25 % and two spares (breaks, the config-change deletions)."""
    total = sum(m.share for m in cfg.media) or 1.0
    share = cfg.media_spec(media).share / total
    minimum = max(1, round(cfg.n_agents * share))
    if not cfg.auto_staff:
        return minimum
    return max(minimum, math.ceil(peak_required * 1.25) + 2)
