"""What the jobs service does with jobs: check them against the owner's sizes and quotas, launch one
instance per run through the launcher, follow it to its end, and fire schedules.

A job's life: CREATED (the user's server stages its input in the user's S3 folder) → QUEUED (a slot in
the owner's quota, then a launch) → IN_PROGRESS (an instance of purpose `job`, with the owner's own
instance profile, runs the notebook with papermill and reports back) → COMPLETED or FAILED (or
STOPPING → STOPPED when its owner stops it). The instance is terminated when it reports its end,
when the job exceeds its timeout, or when it is stopped; an instance that ends without a report
fails its job (or retries it, while it has retries left).

Schedules (cron, in the definition's time zone) are fired by this service, whether or not the
owner's server runs. Runs missed while the service was down: at most one, at its start, for all the
missed times together (the others are skipped, and the definition says when it last ran).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hub.costs.budgets import Budgets
from hub.jobs.checks import (
    JobError,
    Request,
    check_common,
    check_input_path,
    check_request,
    check_schedule,
    compute_type,
    due_time,
    limits_for,
)
from hub.jobs.store import (
    COMPLETED,
    CREATED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    STOPPED,
    STOPPING,
    Definition,
    Job,
    Store,
)
from spawner import aws
from spawner.identity import UserNames
from spawner.launcher import Launch, Launcher
from spawner.owner import TAG_HUB, TAG_JOB, TAG_PURPOSE, Owner, is_owned, tags_of
from spawner.profiles import Profile
from spawner.userdata import render_user_data

log = logging.getLogger("ec2hub.jobs")

PURPOSE = "job"
# A stray job instance (of no job in progress) is left alone this long after its launch: a launch
# that is still being recorded.
STRAY_GRACE = 120.0
# EC2 may list a new instance only a moment after its launch: until then, its absence means nothing.
LISTING_LAG = 60.0


def now_ms() -> int:
    return int(time.time() * 1000)


def report_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Jobs:
    """The service's jobs: what the HTTP API calls, and the loop that launches and follows them."""

    def __init__(
        self,
        store: Store,
        launcher: Launcher,
        sizes: list[Profile],
        *,
        report_url: str,
        groups_of: Callable[[str], Awaitable[list[str] | None]],
        limits: Mapping[str, float] | None = None,
        group_limits: Mapping[str, Mapping[str, float]] | None = None,
        clock: Callable[[], int] = now_ms,
        on_failure: Callable[[Job], Awaitable[None]] | None = None,
        budgets: Budgets | None = None,
        members_of: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.sizes = sizes
        self.report_url = report_url.rstrip("/")
        self.groups_of = groups_of
        self.limits = dict(limits or {})
        self.group_limits = dict(group_limits or {})
        self.clock = clock
        self.on_failure = on_failure
        self.budgets = budgets
        self.members_of = members_of
        self._tick_lock = asyncio.Lock()

    # -- what a person may use ----------------------------------------------------------------------

    def allowed_sizes(self, groups: Iterable[str]) -> list[Profile]:
        groups = list(groups)
        return [s for s in self.sizes if s.allowed_for(groups)]

    def quotas(self, groups: Iterable[str]) -> dict:
        return limits_for(groups, self.limits, self.group_limits)

    def sizes_for(self, groups: list[str]) -> dict:
        sizes = self.allowed_sizes(groups)
        default = min(sizes, key=lambda s: (s.price_per_hour, s.slug)) if sizes else None
        return {
            "sizes": [
                {
                    "compute_type": compute_type(s),
                    "slug": s.slug,
                    "display_name": s.display_name,
                    "instance_type": s.instance_type,
                    "vcpu": s.vcpu,
                    "memory_gib": s.memory_gib,
                    "price_per_hour": s.price_per_hour,
                    "spot": s.spot,
                }
                for s in sizes
            ],
            "default": compute_type(default) if default else None,
            "limits": self.quotas(groups),
        }

    async def _members(self, groups: list[str]) -> dict[str, list[str]]:
        """The members of each of `groups` that has a budget (the group's spend is theirs)."""
        assert self.budgets is not None
        budgeted = [g for g in groups if g in self.budgets.settings.groups]
        return {g: await self.members_of(g) for g in budgeted} if self.members_of else {}

    async def costs(self, user: str, groups: list[str]) -> dict:
        """The user's server's $/hour, the month's spend and budget (JupyterLab's status bar)."""
        if self.budgets is None:
            raise JobError("Costs are not kept on this hub.", 404)
        return await self.budgets.summary(user, groups, await self._members(groups))

    async def check_budget(self, user: str, groups: list[str]) -> None:
        """JobError when the user or one of their groups is over its hard budget this month."""
        if self.budgets is None:
            return
        standing = await self.budgets.standing(user, groups, await self._members(groups))
        refusal = standing.refusal("a new job")
        if refusal:
            await self.budgets.refused(user, "job")
            raise JobError(refusal, 403)

    def check_waiting(self, user: str, groups: list[str]) -> None:
        """JobError when `user` has as many jobs waiting to run as their groups allow (a loop that
        submits jobs stops there, and every job of the queue can still be read and stopped)."""
        waiting = len(self.store.jobs(owner=user, statuses=(CREATED, QUEUED)))
        allowed = int(self.quotas(groups)["max_queued"])
        if waiting >= allowed:
            raise JobError(
                f"You have as many jobs waiting to run as your groups allow ({allowed}): wait for"
                " some to start, or stop or delete some.",
                429,
            )

    async def account_of(self, user: str) -> str:
        owner_id = await self.launcher.owner_id(user)
        if owner_id is None:
            raise JobError("You have no account on the platform yet: start your server once first.", 403)
        return owner_id

    # -- jobs -------------------------------------------------------------------------------------------

    async def create_job(self, user: str, groups: list[str], body: Mapping[str, Any]) -> Job:
        """A job of `user`, waiting for its input to be staged (start_job); or, with `input_path`
        (a notebook in the user's S3 folder, which the job's instance reads with the user's role,
        with the rest of its folder when `package_input_folder`), queued at once."""
        input_path = body.get("input_path")
        if input_path is not None:
            folder, filename = check_input_path(input_path)
            body = {**body, "input_filename": filename}
        common = check_common(body)
        request = check_request(body, self.allowed_sizes(groups), self.quotas(groups))
        await self.check_budget(user, groups)
        owner_id = await self.account_of(user)
        # From here to the job's record nothing awaits: requests sent at once are counted one by one.
        token = body.get("idempotency_token") or None
        if token is not None:
            token = str(token)[:255]
            if self.store.jobs(owner=user, idempotency_token=token):
                raise JobError(f"A job with the idempotency token {token!r} exists already.", 409)
        self.check_waiting(user, groups)
        job_id = str(uuid.uuid4())
        job = self.new_job(
            job_id,
            user,
            owner_id,
            request,
            common,
            input_prefix=UserNames.of(user).prefix
            + (folder if input_path is not None else f"jobs/{job_id}/input/"),
            idempotency_token=token,
            status=CREATED if input_path is None else QUEUED,
        )
        log.info("Job %s of %s created (%s, %s)", job_id, user, job.size, job.input_filename)
        return job

    def new_job(
        self,
        job_id: str,
        owner: str,
        owner_id: str,
        request: Request,
        common: Mapping[str, Any],
        **values: Any,
    ) -> Job:
        """A job of `owner` with the checked request, recorded; its outputs go to jobs/<id>/."""
        now = self.clock()
        size = request.size
        job = Job(
            job_id=job_id,
            owner=owner,
            owner_id=owner_id,
            output_prefix=f"{UserNames.of(owner).prefix}jobs/{job_id}/",
            compute_type=compute_type(size),
            size=size.slug,
            instance_type=size.instance_type,
            price_per_hour=size.spot_price_per_hour if request.spot else size.price_per_hour,
            spot=request.spot,
            timeout_seconds=request.timeout_seconds,
            max_retries=request.max_retries,
            create_time=now,
            update_time=now,
            **common,
            **values,
        )
        self.store.add(job)
        return job

    def start_job(self, job: Job, packaged_files: Any) -> Job:
        """The user's server has staged the input: the job joins the queue."""
        files = [str(f) for f in packaged_files or []] if job.package_input_folder else []
        if not self.store.update(
            job, expect=(CREATED,), status=QUEUED, packaged_files=files, update_time=self.clock()
        ):
            raise JobError(f"Job {job.job_id} was started already.", 409)
        return job

    async def stop_job(self, job: Job) -> Job:
        """Stop the job (a queued one never starts); returns it as it is then."""
        now = self.clock()
        if self.store.update(
            job,
            expect=(CREATED, QUEUED),
            status=STOPPED,
            status_message="Stopped before it started.",
            end_time=now,
            update_time=now,
        ):
            return job
        if not self.store.update(job, expect=(IN_PROGRESS,), status=STOPPING, update_time=now):
            return self.store.job(job.job_id) or job  # ended, or being stopped, meanwhile
        # Its instance as recorded now: a launch still under way sees STOPPING and ends its own.
        job = self.store.job(job.job_id) or job
        await self.end_instance(job)
        self.finish(job, STOPPED, "Stopped by its owner.", expect=(STOPPING,))
        return job

    async def delete_job(self, job: Job) -> None:
        """Forget the job (its outputs stay in the owner's folder); a running one is stopped first."""
        self.store.delete(await self.stop_job(job))

    # -- what job instances report -------------------------------------------------------------------

    def reporting_job(self, job_id: str, secret: str) -> Job | None:
        """The job whose instance holds `secret`, if it is still running."""
        job = self.store.job(job_id)
        if job is None or not job.report_digest or job.status not in (IN_PROGRESS, STOPPING):
            return None
        return job if hmac.compare_digest(job.report_digest, report_digest(secret)) else None

    def report_started(self, job: Job, body: Mapping[str, Any]) -> None:
        started = body.get("attempt_started")
        self.store.update(
            job, run_start_time=started if isinstance(started, int) else None, update_time=self.clock()
        )

    async def report_finished(self, job: Job, body: Mapping[str, Any]) -> None:
        status = body.get("status")
        if status not in (COMPLETED, FAILED):
            raise JobError("status is COMPLETED or FAILED")
        outputs = {str(k): str(v) for k, v in (body.get("outputs") or {}).items() if "/" not in str(v)}
        times = {
            k: body.get(k) if isinstance(body.get(k), int) else None
            for k in ("first_cell_start", "last_cell_end")
        }
        attempt = job.attempt
        self.store.update(
            job,
            expect_attempt=attempt,
            outputs=outputs,
            log_tail=str(body.get("log_tail") or "")[-4000:],
            **times,
        )
        await self.end_instance(job)
        message = str(body.get("status_message") or "")[:2000] or None
        if (
            status == FAILED
            and attempt <= job.max_retries
            and self.requeue(job, f"attempt {attempt} failed", attempt=attempt)
        ):
            return
        ended = self.finish(
            job, status, message if status == FAILED else None, expect=(IN_PROGRESS,), attempt=attempt
        )
        if ended and status == FAILED:
            await self.notify_failure(job)

    # -- instances ------------------------------------------------------------------------------------

    def owner(self, job: Job) -> Owner:
        return Owner(self.launcher.settings.hub_id, job.owner_id, job.owner, purpose=PURPOSE)

    def expected_tags(self, job: Job) -> dict[str, str]:
        return {**self.owner(job).tags(), TAG_JOB: job.job_id}

    def parameter(self, job: Job) -> str:
        # One per attempt: a late report of an attempt withdraws its own settings, not the next one's.
        return f"{UserNames.of(job.owner).parameter_path}jobs/{job.job_id}/{job.attempt}/settings"

    async def launch(self, job: Job) -> None:
        """Launch the job's instance; the job fails with AWS's word if it cannot."""
        secret = secrets.token_urlsafe(32)
        definition_input = job.input_prefix
        settings = {
            "environment": {
                "EC2HUB_BUCKET": self.launcher.settings.bucket,
                "EC2HUB_USER_PREFIX": UserNames.of(job.owner).prefix,
                "JUPYTERHUB_USER": job.owner,
                "EC2HUB_JOB_ID": job.job_id,
                "EC2HUB_JOB_NAME": job.name,
            },
            "job": {
                "input_prefix": definition_input,
                "input_name": job.input_filename,
                # The notebook alone, unless its folder was packaged with it.
                "input_folder": job.package_input_folder,
                "output_prefix": job.output_prefix,
                "output_stem": job.input_filename.rsplit(".", 1)[0],
                "output_formats": list(job.output_formats),
                "parameters": dict(job.parameters),
            },
            "report_url": f"{self.report_url}/{job.job_id}",
            "report_token": secret,
        }
        attempt = job.attempt + 1
        if not self.store.update(
            job,
            expect=(QUEUED,),
            status=IN_PROGRESS,
            attempt=attempt,
            report_digest=report_digest(secret),
            update_time=self.clock(),
        ):
            return  # stopped or deleted since this round read it
        try:
            await aws.call(
                self.launcher.client("ssm"),
                "put_parameter",
                Name=self.parameter(job),
                Value=json.dumps(settings),
                Type="SecureString",
                Overwrite=True,
                Description="What an ec2hub job's instance runs, and its report secret (removed at its end)",
                Tier="Intelligent-Tiering",
            )
            instance = await self.launcher.launch(
                Launch(
                    purpose=PURPOSE,
                    instance_type=job.instance_type,
                    user_data=render_user_data(
                        {"EC2HUB_SETTINGS_PARAMETER": self.parameter(job), "EC2HUB_PURPOSE": PURPOSE}
                    ),
                    name=f"ec2hub-{job.owner}-job-{job.job_id[:8]}",
                    owner=self.owner(job),
                    tags={TAG_JOB: job.job_id},
                    spot=job.spot,
                )
            )
        except Exception as e:
            if isinstance(e, ClientError | BotoCoreError):
                log.warning("Job %s of %s: launch refused: %s", job.job_id, job.owner, e)
                reason = aws.error_code(e) or "AWS could not be reached"
            else:
                log.exception("Job %s of %s: launch failed", job.job_id, job.owner)
                reason = type(e).__name__
            await self.withdraw_settings(job)
            message = f"Its instance could not be launched ({reason}); see the hub's log."
            if self.finish(job, FAILED, message, expect=(IN_PROGRESS,)):
                await self.notify_failure(job)
            return
        now = self.clock()
        recorded = self.store.update(
            job,
            expect=(IN_PROGRESS,),
            instance_id=instance["InstanceId"],
            launch_time=now,
            start_time=job.start_time or now,
            update_time=now,
        )
        if not recorded:
            # Stopped while it was launching: its instance goes at once.
            job.instance_id, job.launch_time = instance["InstanceId"], now
            await self.end_instance(job)
            self.finish(job, STOPPED, "Stopped by its owner.", expect=(STOPPING,))
            return
        log.info(
            "Job %s of %s: instance %s (%s), attempt %d",
            job.job_id,
            job.owner,
            job.instance_id,
            job.instance_type,
            attempt,
        )

    async def end_instance(self, job: Job) -> None:
        """Terminate the job's instance (only if its tags are exactly this job's) and count its time."""
        if job.instance_id:
            try:
                await self.launcher.halt(job.instance_id, self.expected_tags(job), terminate=True)
            except (ClientError, BotoCoreError) as e:
                # The sweep of job instances of no running job tries again.
                log.warning("Job %s: terminating %s failed: %s", job.job_id, job.instance_id, e)
        if job.launch_time:
            used = max(0.0, (self.clock() - job.launch_time) / 1000)
            self.store.update(job, billed_seconds=job.billed_seconds + used, launch_time=None)
        await self.withdraw_settings(job)

    async def withdraw_settings(self, job: Job) -> None:
        try:
            await aws.call(self.launcher.client("ssm"), "delete_parameter", Name=self.parameter(job))
        except ClientError as e:
            if aws.error_code(e) != "ParameterNotFound":
                log.warning("Job %s: its settings parameter stays: %s", job.job_id, e)

    def finish(
        self, job: Job, status: str, message: str | None, *, expect: Iterable[str], attempt: int | None = None
    ) -> bool:
        """End the job, if its status is still one of `expect` (and it is at `attempt`, when given);
        returns whether this ended it."""
        now = self.clock()
        ended = self.store.update(
            job,
            expect=expect,
            expect_attempt=attempt,
            status=status,
            status_message=message,
            end_time=now,
            update_time=now,
            report_digest=None,
        )
        if ended:
            log.info("Job %s of %s: %s%s", job.job_id, job.owner, status, f" ({message})" if message else "")
        return ended

    def requeue(self, job: Job, message: str, attempt: int | None = None) -> bool:
        """Queue the job's next attempt, if it is still in progress (at `attempt`, when given)."""
        log.info("Job %s of %s: %s; retrying", job.job_id, job.owner, message)
        return self.store.update(
            job,
            expect=(IN_PROGRESS,),
            expect_attempt=attempt,
            status=QUEUED,
            status_message=None,
            instance_id=None,
            report_digest=None,
            update_time=self.clock(),
        )

    async def notify_failure(self, job: Job) -> None:
        if self.on_failure is not None:
            try:
                await self.on_failure(job)
            except Exception:
                log.exception("Job %s: the failure notice failed", job.job_id)

    # -- definitions ------------------------------------------------------------------------------------

    async def create_definition(self, user: str, groups: list[str], body: Mapping[str, Any]) -> Definition:
        common = check_common(body)
        request = check_request(body, self.allowed_sizes(groups), self.quotas(groups))
        schedule, zone = check_schedule(body.get("schedule"), body.get("timezone"))
        owner_id = await self.account_of(user)
        definition_id = str(uuid.uuid4())
        now = self.clock()
        definition = Definition(
            job_definition_id=definition_id,
            owner=user,
            owner_id=owner_id,
            input_prefix=f"{UserNames.of(user).prefix}jobs/definitions/{definition_id}/input/",
            compute_type=compute_type(request.size),
            size=request.size.slug,
            schedule=schedule,
            timezone=zone,
            active=False,
            staged=False,
            create_time=now,
            update_time=now,
            **common,
        )
        self.store.add(definition)
        return definition

    def start_definition(self, definition: Definition, packaged_files: Any) -> None:
        files = [str(f) for f in packaged_files or []] if definition.package_input_folder else []
        now = self.clock()
        self.store.update(
            definition, staged=True, active=True, packaged_files=files, last_fire_time=now, update_time=now
        )

    def update_definition(self, definition: Definition, groups: list[str], body: Mapping[str, Any]) -> None:
        merged = {
            k: getattr(definition, k)
            for k in (
                "name",
                "input_filename",
                "output_formats",
                "parameters",
                "tags",
                "compute_type",
                "runtime_environment_name",
                "runtime_environment_parameters",
                "package_input_folder",
                "schedule",
                "timezone",
            )
        }
        # The size by its name: its label holds its price, which the operator may change.
        merged["compute_type"] = definition.size
        merged.update({k: v for k, v in body.items() if k in merged and v is not None})
        if "schedule" in body:
            merged["schedule"] = body["schedule"]
        common = check_common(merged)
        request = check_request(merged, self.allowed_sizes(groups), self.quotas(groups))
        schedule, zone = check_schedule(merged["schedule"], merged["timezone"])
        values = {
            **common,
            "compute_type": compute_type(request.size),
            "size": request.size.slug,
            "schedule": schedule,
            "timezone": zone,
        }
        if "active" in body and body["active"] is not None:
            values["active"] = bool(body["active"]) and definition.staged
            if values["active"] and not definition.active:
                values["last_fire_time"] = self.clock()  # resumed: no catch-up for the paused time
        self.store.update(definition, update_time=self.clock(), **values)

    async def delete_definition(self, definition: Definition) -> None:
        """The definition goes; its jobs stay in the list (and running ones run to their end)."""
        self.store.delete(definition)

    async def run_definition(
        self, definition: Definition, parameters: Mapping[str, Any] | None = None
    ) -> Job:
        """A job from the definition's staged input, queued at once (a schedule's run, or "Run job")."""
        if not definition.staged:
            raise JobError("The job definition's input has not been staged yet.", 409)
        groups = await self.groups_of(definition.owner)
        if groups is None:
            raise JobError(f"User {definition.owner} no longer exists.", 404)
        body = {
            **{c.name: getattr(definition, c.name) for c in Definition.__table__.columns},
            "compute_type": definition.size,
            "parameters": {**definition.parameters, **dict(parameters or {})},
        }
        common = check_common(body)
        request = check_request(body, self.allowed_sizes(groups), self.quotas(groups))
        await self.check_budget(definition.owner, groups)
        self.check_waiting(definition.owner, groups)  # nothing awaits from here to the job's record
        job_id = str(uuid.uuid4())
        job = self.new_job(
            job_id,
            definition.owner,
            definition.owner_id,
            request,
            {**common, "packaged_files": list(definition.packaged_files)},
            input_prefix=definition.input_prefix,
            job_definition_id=definition.job_definition_id,
            status=QUEUED,
        )
        log.info("Job %s of %s from definition %s", job_id, job.owner, definition.job_definition_id)
        return job

    # -- the loop ------------------------------------------------------------------------------------

    async def run_forever(self, period: float) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Jobs: a round failed; next in %.0fs", period)
            await asyncio.sleep(period)

    async def tick(self) -> None:
        """One round: fire due schedules, follow running jobs, launch queued ones, end strays."""
        async with self._tick_lock:
            for step in (self.fire_schedules, self.follow_running, self.launch_queued, self.end_strays):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("Jobs: %s failed", step.__name__)

    async def fire_schedules(self) -> None:
        now = self.clock()
        for definition in self.store.definitions(active=True):
            due = due_time(definition, now)
            if due is None:
                continue
            try:
                await self.run_definition(definition)
            except JobError as e:
                # Refused (a size no longer open to the owner, a budget): this run is skipped.
                log.warning(
                    "Definition %s of %s not run: %s", definition.job_definition_id, definition.owner, e
                )
            except Exception:
                # The hub did not answer, say: the run is tried again at the next round.
                log.exception(
                    "Definition %s of %s: its run failed", definition.job_definition_id, definition.owner
                )
                continue
            self.store.update(definition, last_fire_time=due)

    async def job_instances(self) -> list[dict]:
        response = await self.launcher.call(
            "describe_instances",
            Filters=[
                {"Name": f"tag:{TAG_HUB}", "Values": [self.launcher.settings.hub_id]},
                {"Name": f"tag:{TAG_PURPOSE}", "Values": [PURPOSE]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
            ],
        )
        return [i for r in response["Reservations"] for i in r["Instances"]]

    async def follow_running(self) -> None:
        running = self.store.jobs(statuses=(IN_PROGRESS, STOPPING))
        if not running:
            return
        alive = {i["InstanceId"]: i for i in await self.job_instances()}
        now = self.clock()
        for job in running:
            instance = alive.get(job.instance_id or "")
            if job.status == STOPPING:
                await self.end_instance(job)
                self.finish(job, STOPPED, "Stopped by its owner.", expect=(STOPPING,))
            elif job.start_time and now - job.start_time > job.timeout_seconds * 1000:
                await self.end_instance(job)
                message = f"Stopped: it ran past its timeout of {job.timeout_seconds} s."
                if self.finish(job, FAILED, message, expect=(IN_PROGRESS,)):
                    await self.notify_failure(job)
            elif not job.instance_id and now - job.update_time > STRAY_GRACE * 1000:
                # The service stopped between marking the launch and recording its instance (which
                # the stray sweep ends).
                if job.attempt <= job.max_retries:
                    self.requeue(job, "its launch was interrupted")
                else:
                    self.finish(job, FAILED, "Its launch was interrupted.", expect=(IN_PROGRESS,))
            elif job.instance_id and (
                (instance is None and now - (job.launch_time or 0) > LISTING_LAG * 1000)
                or (instance is not None and instance["State"]["Name"] in ("stopping", "stopped"))
            ):
                state = instance["State"]["Name"] if instance else "terminated"
                await self.end_instance(job)
                why = "reclaimed by EC2 (spot)" if job.spot else f"{state}"
                if job.attempt <= job.max_retries:
                    self.requeue(job, f"its instance ended before the notebook did ({why})")
                elif self.finish(
                    job, FAILED, f"Its instance ended before the notebook did ({why}).", expect=(IN_PROGRESS,)
                ):
                    await self.notify_failure(job)

    async def launch_queued(self) -> None:
        queued = self.store.jobs(statuses=(QUEUED,))
        if not queued:
            return
        running: dict[str, int] = {}
        for job in self.store.jobs(statuses=(IN_PROGRESS, STOPPING)):
            running[job.owner] = running.get(job.owner, 0) + 1
        groups: dict[str, list[str] | None] = {}
        for job in queued:
            if job.owner not in groups:
                groups[job.owner] = await self.groups_of(job.owner)
            if groups[job.owner] is None:
                self.finish(job, FAILED, f"User {job.owner} no longer exists.", expect=(QUEUED,))
                continue
            allowed = self.quotas(groups[job.owner])["max_concurrent"]
            if running.get(job.owner, 0) >= allowed:
                continue  # waits for one of the owner's jobs to end
            running[job.owner] = running.get(job.owner, 0) + 1
            try:
                await self.launch(job)
            except Exception:
                log.exception("Job %s of %s: its launch failed", job.job_id, job.owner)

    async def end_strays(self) -> None:
        """Terminate job instances of no job in progress (a job deleted or ended while its instance
        was being launched, or a record lost)."""
        live = {j.job_id: j for j in self.store.jobs(statuses=(IN_PROGRESS, STOPPING))}
        now = self.clock() / 1000
        strays = []
        for instance in await self.job_instances():
            job = live.get(tags_of(instance).get(TAG_JOB, ""))
            if (
                job is not None
                and job.instance_id == instance["InstanceId"]
                and is_owned(instance, self.expected_tags(job))
            ):
                continue
            if now - instance["LaunchTime"].timestamp() > STRAY_GRACE:
                strays.append(instance["InstanceId"])
        if strays:
            log.warning("Terminating job instances of no running job: %s", ", ".join(strays))
            await self.launcher.terminate(strays)
