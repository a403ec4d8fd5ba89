"""The jobs service's database: jobs and job definitions (with their schedules), one row each.

SQLite on the hub's volume by default, or the database the operator names (EC2HUB_JOBS_DB_URL, any
SQLAlchemy URL, e.g. postgresql://). Rows carry the owner's name, and every read by a person names
it: a job of another user is "not found", never filtered by a pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

# jupyter-scheduler's statuses (its UI acts on them: Stop only for IN_PROGRESS).
CREATED = "CREATED"  # waiting for its input to be staged by the user's server
QUEUED = "QUEUED"  # staged, waiting for a slot in the owner's quota or for its launch
IN_PROGRESS = "IN_PROGRESS"  # its instance is booting or running the notebook
STOPPING = "STOPPING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STOPPED = "STOPPED"
ACTIVE = (QUEUED, IN_PROGRESS, STOPPING)
ENDED = (COMPLETED, FAILED, STOPPED)


class Base(DeclarativeBase):
    pass


class Common:
    """What a job and a job definition both have: the owner, the notebook and how to run it."""

    owner: Mapped[str] = mapped_column(String(255), index=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    input_filename: Mapped[str] = mapped_column(String(255))
    # Full S3 keys in the platform's bucket.
    input_prefix: Mapped[str] = mapped_column(String(1024))
    runtime_environment_name: Mapped[str] = mapped_column(String(255), default="ec2hub")
    runtime_environment_parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    output_formats: Mapped[list] = mapped_column(JSON, default=list)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    # The size's label as JupyterLab shows it (with its price then), and the size itself.
    compute_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[str] = mapped_column(String(64))
    package_input_folder: Mapped[bool] = mapped_column(Boolean, default=False)
    packaged_files: Mapped[list] = mapped_column(JSON, default=list)
    # Epoch milliseconds, as jupyter-scheduler's models (64-bit: PostgreSQL's INTEGER is 32).
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)


class Job(Common, Base):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    output_prefix: Mapped[str] = mapped_column(String(1024))
    instance_type: Mapped[str] = mapped_column(String(64))
    price_per_hour: Mapped[float] = mapped_column(Float)
    spot: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_token: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_definition_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    start_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=CREATED)
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # When the current instance was launched (ms), and the instance time of earlier attempts (s):
    # what the job has cost so far.
    launch_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    billed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the job's instance reports (its clock): its bootstrap began the run, the notebook's first
    # cell began, its last cell ended.
    run_start_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    first_cell_start: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_cell_end: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # SHA-256 of the secret the job's instance reports with.
    report_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Definition(Common, Base):
    __tablename__ = "job_definitions"

    job_definition_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    schedule: Mapped[str | None] = mapped_column(String(255), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # False until the user's server has staged the input (then POST .../start).
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    # The schedule's last time that was acted on (ms): runs are counted from here.
    last_fire_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Store:
    """Sessions on the jobs database; each method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def add(self, row: Base) -> None:
        with self.session() as s:
            s.add(row)

    def job(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, only if `owner` (when given) is exactly its owner."""
        with self.session() as s:
            job = s.get(Job, job_id)
        return job if job is not None and (owner is None or job.owner == owner) else None

    def definition(self, definition_id: str, owner: str | None = None) -> Definition | None:
        with self.session() as s:
            found = s.get(Definition, definition_id)
        return found if found is not None and (owner is None or found.owner == owner) else None

    def update(
        self,
        row: Job | Definition,
        *,
        expect: Iterable[str] = (),
        expect_attempt: int | None = None,
        **values: Any,
    ) -> bool:
        """Write `values` (those columns only) to the row, and to `row`; with `expect`, only while the
        job's status is one of them (a Stop, a report or another round may have changed it since `row`
        was read), and with `expect_attempt` only while the job is still at that attempt (a late report of
        an earlier one changes nothing). Returns whether it was written."""
        table = type(row)
        [key] = inspect(table).primary_key
        query = update(table).where(key == getattr(row, key.name)).values(**values)
        expect = list(expect)
        if expect:
            query = query.where(table.status.in_(expect))
        if expect_attempt is not None:
            query = query.where(table.attempt == expect_attempt)
        with self.session() as s:
            written = s.execute(query, execution_options={"synchronize_session": False}).rowcount == 1
        if written:
            for name, value in values.items():
                setattr(row, name, value)
        return written

    def delete(self, row: Base) -> None:
        with self.session() as s:
            s.delete(s.merge(row))

    def jobs(self, *, owner: str | None = None, statuses: Iterable[str] = (), **equal: Any) -> list[Job]:
        query = select(Job).order_by(Job.create_time)
        if owner is not None:
            query = query.where(Job.owner == owner)
        statuses = list(statuses)
        if statuses:
            query = query.where(Job.status.in_(statuses))
        for name, value in equal.items():
            query = query.where(getattr(Job, name) == value)
        with self.session() as s:
            return list(s.scalars(query))

    def definitions(self, *, owner: str | None = None, **equal: Any) -> list[Definition]:
        query = select(Definition).order_by(Definition.create_time)
        if owner is not None:
            query = query.where(Definition.owner == owner)
        for name, value in equal.items():
            query = query.where(getattr(Definition, name) == value)
        with self.session() as s:
            return list(s.scalars(query))

    def counts_by_status(self) -> dict[str, int]:
        with self.session() as s:
            return dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # The service and a restarted copy of it may overlap for a moment: wait for the lock, don't fail.
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()
