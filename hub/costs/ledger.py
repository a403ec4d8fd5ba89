"""The ledger: what each user's instances cost, to the second, for every purpose (server, pool once
claimed, Dask scheduler and workers, job).

It is fed what EC2 says of the hub's instances (`observe`, at each round of whoever lists them) and
keeps segments: a stretch of time at one rate, for one instance and one kind of spend (`compute`
while the instance runs, at its type's price; `volume` while its disk exists, running or stopped).
The times come from EC2 itself, not from when a round happened to look: a running instance's
LaunchTime (EC2 resets it at each start), the time in a stopped or terminated instance's
StateTransitionReason. So a late round, or a hub that was down for an hour, still starts and ends
each segment at the second it happened. Only what no listing could show (an instance stopped and
started again between two rounds) counts from the last round that saw it running.

The segments are kept in a database (SQLite on the hub's volume by default), so a restart loses
nothing: the next round carries on the open segments, or opens them from EC2's launch times.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Float, Integer, String, create_engine, func, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from hub.costs.prices import Prices
from spawner.owner import TAG_PURPOSE, TAG_USER

log = logging.getLogger("ec2hub.costs")

COMPUTE = "compute"
VOLUME = "volume"
# EC2 bills compute from the start until the stop (pending included); volumes until they are deleted.
COMPUTE_STATES = ("pending", "running")
GONE_STATES = ("shutting-down", "terminated")
# "User initiated (2026-12-01 04:00:00 GMT)", "Server.SpotInstanceTermination (...)" and the like.
TRANSITION_TIME = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) GMT\)")


class Base(DeclarativeBase):
    pass


class Segment(Base):
    __tablename__ = "cost_segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)
    user: Mapped[str] = mapped_column(String(255), index=True)  # "" for an unclaimed pool instance
    purpose: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    # What is billed: the instance type ("m6i.xlarge", "m6i.xlarge spot") or the volume ("50 GB").
    detail: Mapped[str] = mapped_column(String(64))
    rate: Mapped[float] = mapped_column(Float)  # USD per hour
    # Epoch seconds: from, until (None: still open), and the last round that saw it open.
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    seen: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Observation:
    """One instance as a listing showed it: whose, what for, what it is, its state and since when."""

    instance_id: str
    user: str
    purpose: str
    instance_type: str
    spot: bool
    volume_gb: int
    state: str
    since: int  # epoch seconds: when it entered its state, as EC2 says (0: unknown)
    launched: int = 0  # epoch seconds: its last start (EC2's LaunchTime)

    @classmethod
    def of(cls, instance: Mapping, volume_gb: int) -> Observation:
        """From an instance of DescribeInstances (tags, type, lifecycle, state and its times)."""
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        state = instance["State"]["Name"]
        launched = int(instance["LaunchTime"].timestamp()) if instance.get("LaunchTime") else 0
        if state in COMPUTE_STATES:
            since = launched
        else:
            found = TRANSITION_TIME.search(instance.get("StateTransitionReason") or "")
            since = (
                int(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
                if found
                else 0
            )
        return cls(
            instance_id=instance["InstanceId"],
            user=tags.get(TAG_USER, ""),
            purpose=tags.get(TAG_PURPOSE, "server"),
            instance_type=instance["InstanceType"],
            spot=instance.get("InstanceLifecycle") == "spot",
            volume_gb=volume_gb,
            state=state,
            since=since,
            launched=launched,
        )


class Ledger:
    """Segments of spend in a database; `observe` after each listing, `spend` for what it adds to."""

    def __init__(self, url: str, prices: Prices, clock: Callable[[], float] = time.time) -> None:
        self.engine = create_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.prices = prices
        self.clock = clock
        # What the last round saw (the metrics' instances by purpose, state and size).
        self.last_observed: list[Observation] = []

    def session(self):
        """One transaction on the ledger's database (its budgets' lifts live there too)."""
        return self._sessions.begin()

    def observe(self, observations: Iterable[Observation], *, complete: bool = True) -> None:
        """Bring the segments up to what the listing showed. With `complete` (the listing holds every
        instance of the hub), an instance no longer in it has gone: its segments end when last seen."""
        now = int(self.clock())
        seen_ids = set()
        observations = list(observations)
        with self._sessions.begin() as session:
            for observed in observations:
                seen_ids.add(observed.instance_id)
                self._settle(session, observed, COMPUTE, *self._compute(observed), now)
                self._settle(session, observed, VOLUME, *self._volume(observed), now)
            if complete:
                open_segments = session.scalars(select(Segment).where(Segment.end.is_(None)))
                for segment in open_segments:
                    if segment.instance_id not in seen_ids:
                        segment.end = segment.seen
        self.last_observed = observations

    def _compute(self, observed: Observation) -> tuple[float | None, str]:
        if observed.state not in COMPUTE_STATES:
            return None, ""
        rate = self.prices.hourly(observed.instance_type, observed.spot)
        return rate, observed.instance_type + (" spot" if observed.spot else "")

    def _volume(self, observed: Observation) -> tuple[float | None, str]:
        if observed.state in GONE_STATES or not observed.volume_gb:
            return None, ""
        return self.prices.volume_hourly(observed.volume_gb), f"{observed.volume_gb} GB"

    def _settle(
        self, session, observed: Observation, kind: str, rate: float | None, detail: str, now: int
    ) -> None:
        """The open segment of this instance and kind, ended, continued or replaced as observed."""
        found = session.scalars(
            select(Segment).where(
                Segment.instance_id == observed.instance_id, Segment.kind == kind, Segment.end.is_(None)
            )
        ).first()
        since = min(observed.since or now, now)
        if found is not None:
            if rate is None:
                # It stopped (or went) at `since`, as EC2 says; never before the segment began.
                found.end = max(found.start, since if observed.since else found.seen)
                return
            restarted = kind == COMPUTE and since > found.start
            same = (found.rate, found.detail, found.user, found.purpose) == (
                rate,
                detail,
                observed.user,
                observed.purpose,
            )
            if same and not restarted:
                found.seen = now
                return
            # A new rate (a spot price) or owner (a hot-pool instance claimed) from now; a start no
            # round saw from its launch, the time it was stopped unknown: running until the last round
            # that saw it.
            found.end = max(found.start, found.seen if restarted else now)
            start = since if restarted else now
        elif rate is None:
            if kind == COMPUTE:
                self._ran_unseen(session, observed, now)
            return
        else:
            # Never again what is already counted (a restart that sees the same run).
            start = max(since, _last_end(session, observed.instance_id, kind))
        session.add(
            Segment(
                instance_id=observed.instance_id,
                user=observed.user,
                purpose=observed.purpose,
                kind=kind,
                detail=detail,
                rate=rate,
                start=start,
                end=None,
                seen=now,
            )
        )

    def _ran_unseen(self, session, observed: Observation, now: int) -> None:
        """An instance first seen stopped or terminated ran from its last start to then, if no
        segment counts that (a run shorter than a round, or one while the hub was down)."""
        rate = self.prices.hourly(observed.instance_type, observed.spot)
        if rate is None or not observed.launched or not observed.since:
            return
        start = max(observed.launched, _last_end(session, observed.instance_id, COMPUTE))
        end = min(observed.since, now)
        if start < end:
            session.add(
                Segment(
                    instance_id=observed.instance_id,
                    user=observed.user,
                    purpose=observed.purpose,
                    kind=COMPUTE,
                    detail=observed.instance_type + (" spot" if observed.spot else ""),
                    rate=rate,
                    start=start,
                    end=end,
                    seen=now,
                )
            )

    def spend(self, since: datetime, until: datetime | None = None) -> dict[tuple[str, str, str, str], float]:
        """USD by (user, purpose, kind, UTC day) between `since` and `until` (default now); open
        segments count up to now."""
        now = int(self.clock())
        low = int(since.timestamp())
        high = min(int(until.timestamp()), now) if until else now
        with self._sessions.begin() as session:
            segments = list(
                session.scalars(
                    select(Segment).where(Segment.start < high, or_(Segment.end.is_(None), Segment.end > low))
                )
            )
        totals: dict[tuple[str, str, str, str], float] = {}
        for segment in segments:
            start, end = max(segment.start, low), min(segment.end if segment.end is not None else now, high)
            for day, seconds in _by_day(start, end):
                key = (segment.user, segment.purpose, segment.kind, day)
                totals[key] = totals.get(key, 0.0) + seconds * segment.rate / 3600
        return totals

    def running(self, user: str, purpose: str) -> list[tuple[str, float]]:
        """What the user's instances of `purpose` run up now, as the last round saw them: (what is
        billed, e.g. "m6i.xlarge spot", USD per hour) for each open compute segment."""
        with self._sessions.begin() as session:
            open_segments = session.scalars(
                select(Segment).where(
                    Segment.user == user,
                    Segment.purpose == purpose,
                    Segment.kind == COMPUTE,
                    Segment.end.is_(None),
                )
            )
            return [(s.detail, s.rate) for s in open_segments]


def _last_end(session, instance_id: str, kind: str) -> int:
    """Until when the instance's spend of that kind is counted already (0: not at all)."""
    query = select(func.max(Segment.end)).where(Segment.instance_id == instance_id, Segment.kind == kind)
    return session.scalar(query) or 0


def _by_day(start: int, end: int) -> Iterable[tuple[str, int]]:
    """The seconds of [start, end) in each UTC day."""
    while start < end:
        day = datetime.fromtimestamp(start, UTC)
        midnight = int((day.replace(hour=0, minute=0, second=0) + timedelta(days=1)).timestamp())
        stop = min(end, midnight)
        yield day.date().isoformat(), stop - start
        start = stop


def total(spend: Mapping[tuple[str, str, str, str], float], **match: str) -> float:
    """The sum of `spend` over the keys matching `user=`, `purpose=`, `kind=`, `day=`."""
    fields = ("user", "purpose", "kind", "day")
    return sum(
        value
        for key, value in spend.items()
        if all(key[fields.index(name)] == wanted for name, wanted in match.items())
    )


async def keep_ledger(
    ledger: Ledger,
    list_instances: Callable[[], Awaitable[list[dict]]],
    volume_gb: int,
    period: float,
) -> None:
    """Observe every instance of the hub (terminated ones too, while EC2 lists them) every `period`
    seconds, for as long as the service runs; the database work off the event loop."""
    while True:
        try:
            observed = [Observation.of(i, volume_gb) for i in await list_instances()]
            await asyncio.to_thread(ledger.observe, observed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Costs: a round of the ledger failed; next in %.0fs", period)
        await asyncio.sleep(period)
