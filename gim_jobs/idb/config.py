"""Tunables of the contact-center traffic simulator: what the center looks like, not how it is written.

Everything is a frozen dataclass so a configuration compares by value: a run resumes the saved model
of the previous run on the same IDB only when its ``SimConfig`` equals the saved one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

VOICE, CHAT, EMAIL = "voice", "chat", "email"

# dn_type codes of gc_endpoint (see gim_jobs/db/sql/idb/001_icon.sql)
DN_EXTENSION, DN_ACD_QUEUE, DN_VIRTUAL_QUEUE, DN_ROUTING_POINT, DN_INTERACTION_QUEUE, DN_TRUNK = 1, 2, 3, 4, 5, 6

# Calls a day by local hour: quiet at night, peaks around 10:00 and 14:00.
BUSINESS_PROFILE = (
    0.15, 0.10, 0.08, 0.07, 0.08, 0.15, 0.35, 0.70, 1.20, 1.70, 2.00, 1.80,
    1.40, 1.60, 1.90, 1.70, 1.40, 1.00, 0.70, 0.55, 0.45, 0.35, 0.25, 0.20,
)
# E-mail is written around the clock, with a softer daytime bump.
EMAIL_PROFILE = (
    0.40, 0.30, 0.25, 0.25, 0.30, 0.40, 0.60, 0.90, 1.20, 1.40, 1.50, 1.50,
    1.40, 1.40, 1.40, 1.30, 1.20, 1.10, 1.00, 0.90, 0.80, 0.70, 0.60, 0.50,
)
# Monday .. Sunday
WEEKDAY_FACTOR = (1.0, 1.0, 1.0, 1.0, 0.95, 0.5, 0.3)


@dataclass(frozen=True)
class MediaSpec:
    """Behaviour of one media type. Durations are seconds; handle times are log-normal."""

    name: str
    share: float                        # fraction of all arrivals
    offline: bool = False               # e-mail: never abandons, waits for business hours
    patience_mean_s: float = 90.0       # customer patience while waiting: min + exponential(mean)
    patience_min_s: int = 8
    ring_s: tuple[int, int] = (3, 12)   # ringing / invitation before the agent answers
    ring_abandon_p: float = 0.15        # patience running out while ringing: share that hang up
    rona_p: float = 0.03                # ring no answer -> 'redirected', back to the queue
    rona_timeout_s: int = 15
    rona_not_ready_s: tuple[int, int] = (30, 180)
    handle_mean_s: float = 240.0        # talk / chat / e-mail handling (agent party established)
    handle_sigma: float = 0.6
    acw_p: float = 0.85
    acw_mean_s: float = 45.0
    profile: tuple[float, ...] = BUSINESS_PROFILE
    weekday_factor: tuple[float, ...] = WEEKDAY_FACTOR
    staffed_hours: tuple[int, int] | None = None   # local [from, to) hours; None: around the clock
    staffed_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    capacity_factor: float = 1.0        # staffed capacity / offered load for offline media
    staffing_factor: float = 1.0        # times SimConfig.staffing_factor (online media)


@dataclass(frozen=True)
class QueueSpec:
    """A mediation DN: ACD queue (voice), virtual queue behind the routing point (voice) or
    interaction queue (multimedia). Agents with ``skill`` serve it."""

    key: str
    endpoint_id: int
    dn: str
    dn_type: int
    media: str
    skill: str
    weight: float                       # share of its media's arrivals
    overflow_to: str | None = None      # virtual queues: cleared to this queue after a wait
    overflow_after_s: int = 120


@dataclass(frozen=True)
class ReasonSpec:
    code: str
    text: str
    weight: float
    duration_s: tuple[int, int]


DEFAULT_MEDIA = (
    MediaSpec(VOICE, 0.70, staffing_factor=0.88),
    MediaSpec(CHAT, 0.20, patience_mean_s=150.0, staffing_factor=1.05, ring_s=(2, 10), rona_p=0.02, rona_timeout_s=20,
              handle_mean_s=420.0, handle_sigma=0.5, acw_p=0.7, acw_mean_s=30.0),
    MediaSpec(EMAIL, 0.10, offline=True, ring_s=(1, 5), rona_p=0.01, rona_timeout_s=30,
              handle_mean_s=480.0, handle_sigma=0.5, acw_p=0.5, acw_mean_s=60.0, profile=EMAIL_PROFILE,
              weekday_factor=(1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.6), staffed_hours=(8, 18),
              staffed_weekdays=(0, 1, 2, 3, 4, 5), capacity_factor=1.25),
)

DEFAULT_QUEUES = (
    QueueSpec("sales", 201, "7001", DN_ACD_QUEUE, VOICE, "Sales", 0.35),
    QueueSpec("support", 202, "7002", DN_ACD_QUEUE, VOICE, "Support", 0.35),
    QueueSpec("billing", 301, "VQ_Billing", DN_VIRTUAL_QUEUE, VOICE, "Billing", 0.20),
    QueueSpec("premium", 302, "VQ_Premium", DN_VIRTUAL_QUEUE, VOICE, "Premium", 0.10,
              overflow_to="billing", overflow_after_s=60),
    QueueSpec("chat", 401, "Chat_Inbound", DN_INTERACTION_QUEUE, CHAT, "Chat", 1.0),
    QueueSpec("email", 402, "Email_Inbound", DN_INTERACTION_QUEUE, EMAIL, "Email", 1.0),
)

DEFAULT_REASONS = (
    ReasonSpec("BREAK", "Break", 0.55, (300, 900)),
    ReasonSpec("LUNCH", "Lunch", 0.15, (1800, 2700)),
    ReasonSpec("MEETING", "Team meeting", 0.15, (900, 1800)),
    ReasonSpec("TRAINING", "Training", 0.10, (1200, 3600)),
    ReasonSpec("PERSONAL", "Personal time", 0.05, (120, 600)),
)
RONA_REASON = ReasonSpec("RONA", "Ring no answer", 0.0, (30, 180))


@dataclass(frozen=True)
class CampaignSpec:
    """An outbound campaign (gc_campaign) with its calling lists (gc_calling_list: id, name, records).
    ``outcomes``: how a dialed contact responds, (call_result, weight); an 'ANSWER' with no voice
    agent logged in becomes 'DROPPED' (see ``gim_jobs.idb.outbound``)."""

    campaign_id: int
    name: str
    weight: float                                   # share of the outbound attempts
    lists: tuple[tuple[int, str, int], ...]
    dialing_mode: str = "Predictive"
    outcomes: tuple[tuple[str, float], ...] = (
        ("ANSWER", 0.40), ("NO_ANSWER", 0.30), ("BUSY", 0.10), ("ANSWERING_MACHINE", 0.15), ("SIT_DETECTED", 0.05))
    ring_s: tuple[int, int] = (6, 30)               # dialing until the contact's side responds
    talk_mean_s: float = 180.0                      # log-normal talk time of an answered attempt
    talk_sigma: float = 0.6


DEFAULT_CAMPAIGNS = (
    CampaignSpec(1, "Renewals", 0.5, ((11, "Renewals Q1", 4000), (12, "Renewals Lapsed", 1500))),
    CampaignSpec(2, "Collections", 0.3, ((21, "Collections 30d", 2500),), dialing_mode="Progressive",
                 outcomes=(("ANSWER", 0.30), ("NO_ANSWER", 0.40), ("BUSY", 0.12), ("ANSWERING_MACHINE", 0.15),
                           ("SIT_DETECTED", 0.03)), talk_mean_s=240.0),
    CampaignSpec(3, "Survey", 0.2, ((31, "Survey Customers", 6000),), dialing_mode="Preview", talk_mean_s=120.0),
)

ROUTING_POINT_ID, ROUTING_POINT_DN = 101, "5000"
TRUNK_ID, TRUNK_DN = 601, "trunk-pstn"


@dataclass(frozen=True)
class SimConfig:
    """The simulated contact center.

    ``n_agents`` is the minimum roster (split by media share); with ``auto_staff`` the roster and
    the agents on duty each hour follow the offered load (per skill: load * ``staffing_factor`` +
    ``staffing_beta`` * sqrt(load)), so any interaction count over any span gives waits and a few
    per cent of abandons.
    """

    seed: int = 1
    n_agents: int = 40
    auto_staff: bool = True
    staffing_factor: float = 0.95              # agents on duty ~ load * factor + beta * sqrt(load)
    staffing_beta: float = 0.3
    media: tuple[MediaSpec, ...] = DEFAULT_MEDIA
    queues: tuple[QueueSpec, ...] = DEFAULT_QUEUES
    reasons: tuple[ReasonSpec, ...] = DEFAULT_REASONS
    not_ready_after_call_p: float = 0.03
    route_delay_s: tuple[int, int] = (1, 3)     # routing point -> virtual queue
    hold_p: float = 0.15
    hold_s: tuple[int, int] = (10, 90)
    transfer_p: float = 0.05                   # blind transfer to another agent
    consult_p: float = 0.06                    # consultation call (call_type 4)
    consult_transfer_p: float = 0.4            # consultation completed as a transfer
    conference_p: float = 0.02
    consult_s: tuple[int, int] = (20, 120)
    conference_s: tuple[int, int] = (30, 180)
    utc_offset_hours: int = 0                  # local time of the center (arrival profile, staffing)
    config_change_interval_s: int | None = None  # agent added / deleted; None: span/3 (batch), 1 h (live); 0: never
    live_profile: bool = False                 # live mode: modulate the rate by the hour profile
    campaigns: tuple[CampaignSpec, ...] = DEFAULT_CAMPAIGNS  # outbound (ICON_OCS), gim_jobs.idb.outbound
    outbound_per_inbound: float = 0.25         # dialing attempts per inbound voice arrival; 0: no outbound

    def media_spec(self, name: str) -> MediaSpec:
        for m in self.media:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class FaultSpec:
    """Realistic data faults, for the transform's discard handling. Each fault is recorded in
    ``sim.truth_fault`` and in ``sim.truth_interaction.fault``.

    Per g_party_history row: ``late_rows`` (written in a later write batch with a new gsys_seq but
    its original added_ts), ``out_of_order`` (written before the row that precedes it in time),
    ``duplicated`` (written twice with different ids), ``unknown_party`` (an extra row whose partyid
    exists nowhere). Per interaction: ``orphan_party`` (its g_call rows are never written, so its
    parties reference missing calls) and ``malformed`` (one party gets terminated_ts < created_ts).
    ``orphan_party`` and ``malformed`` interactions are ``excluded`` from expected measures.
    """

    late_rows: float = 0.0
    late_delay_s: tuple[int, int] = (120, 1800)
    out_of_order: float = 0.0
    duplicated: float = 0.0
    unknown_party: float = 0.0
    orphan_party: float = 0.0
    malformed: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "late_delay_s")

    @property
    def any_row(self) -> bool:
        return bool(self.late_rows or self.out_of_order or self.duplicated or self.unknown_party)

    @classmethod
    def realistic(cls) -> FaultSpec:
        """A few faults of every kind (about 1 in 200 interactions each)."""
        return cls(late_rows=0.002, out_of_order=0.002, duplicated=0.002, unknown_party=0.0005,
                   orphan_party=0.003, malformed=0.003)

    @classmethod
    def default(cls) -> FaultSpec:
        """The faults ``gim idb simulate --faults`` injects: ``realistic()``."""
        return cls.realistic()

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec | None:
        """``"late=0.01,dup=0.01,orphan=0.005"`` or ``"realistic"`` -> FaultSpec; ``None``/"" -> None.
        Names: late, ooo (out_of_order), dup (duplicated), unknown (unknown_party), orphan, malformed."""
        if not text:
            return None
        if text.strip() == "realistic":
            return cls.realistic()
        alias = {"late": "late_rows", "ooo": "out_of_order", "out_of_order": "out_of_order",
                 "dup": "duplicated", "duplicated": "duplicated", "unknown": "unknown_party",
                 "unknown_party": "unknown_party", "orphan": "orphan_party", "orphan_party": "orphan_party",
                 "malformed": "malformed", "late_rows": "late_rows"}
        kwargs: dict[str, float] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            name, _, value = part.partition("=")
            key = alias.get(name.strip())
            if key is None:
                raise ValueError(f"unknown fault {name.strip()!r}; valid: {', '.join(sorted(set(alias)))}")
            try:
                p = float(value)
            except ValueError:
                raise ValueError(f"fault {name.strip()}: {value!r} is not a number") from None
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault {name.strip()}: {p} is not a probability in [0, 1]")
            kwargs[key] = p
        return cls(**kwargs)


@dataclass(frozen=True)
class AgentSpec:
    """One configured agent as the simulator sees it (stored in ``sim.agent``)."""

    agent_id: int
    media: str
    skills: tuple[str, ...]
    endpoint_id: int
    dn: str = field(default="")
