"""The jobs service's HTTP API: what JupyterLab's notebook jobs call (through the user's server,
images/bootstrap/ec2hub_scheduler.py), what job instances report to, and Prometheus metrics.

People and their servers authenticate with hub tokens carrying `access:services!service=jobs`
(header only: no cookie, so no cross-site request can act). Every job and definition is looked up
by its id *and* its owner's exact name: another user's is "not found". Job instances report with
the secret of their own run, kept in the run's SSM parameter, which only the owner's role reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from jupyterhub.services.auth import HubAuth
from jupyterhub.utils import url_path_join
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from tornado import web

from hub.jobs.checks import SORTABLE, JobError, sort_key
from hub.jobs.runner import Jobs
from hub.jobs.store import ENDED, IN_PROGRESS, QUEUED, STOPPING
from hub.jobs.views import definition_model, job_model

log = logging.getLogger("ec2hub.jobs")

ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAX_ITEMS = 1000
MAX_BODY = 256 * 1024


class JsonHandler(web.RequestHandler):
    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))

    def body(self) -> dict:
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, "The request is too large.")
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The body is not JSON.") from None
        if not isinstance(value, dict):
            raise web.HTTPError(400, "The body is a JSON object.")
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = self._reason
        if isinstance(error, JobError):
            status_code, message = error.status, str(error)
        elif isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, JobError):
            return
        super().log_exception(typ, value, tb)

    @property
    def jobs(self) -> Jobs:
        return self.settings["jobs"]


class PersonHandler(JsonHandler):
    """A hub user (never a service), by their token; `self.user` and `self.groups`."""

    async def prepare(self) -> None:
        hub_auth: HubAuth = self.settings["hub_auth"]
        model = await hub_auth.get_user(self, sync=False)
        if not model:
            raise web.HTTPError(
                403, "Sign in to the hub: a hub token with access to the jobs service is needed."
            )
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "Only users have jobs.")
        # A token of the user's that is not for this service (one made for something else) is refused.
        if not hub_auth.check_scopes(hub_auth.access_scopes, model):
            raise web.HTTPError(403, "This token does not give access to the jobs service.")
        self.model = model
        self.user: str = model["name"]
        groups = await self.settings["groups_of"](self.user)
        if groups is None:
            raise web.HTTPError(403, "Only users have jobs.")
        self.groups: list[str] = groups

    def own_job(self, job_id: str):
        job = self.jobs.store.job(job_id, owner=self.user)
        if job is None:
            raise JobError(f"No job {job_id}.", 404)
        return job

    def own_definition(self, definition_id: str):
        definition = self.jobs.store.definition(definition_id, owner=self.user)
        if definition is None:
            raise JobError(f"No job definition {definition_id}.", 404)
        return definition


def page(items: list, query: Callable[[str], str | None]) -> tuple[list, int, str | None]:
    """Sorted, then one page: max_items from the offset in next_token."""
    for name, descending in reversed(sort_key(query("sort_by") or "")):
        items.sort(key=lambda m: (m.get(name) is None, m.get(name) or 0), reverse=descending)
    try:
        limit = min(int(query("max_items") or MAX_ITEMS), MAX_ITEMS)
        offset = int(query("next_token") or 0)
    except ValueError:
        raise JobError("max_items and next_token are numbers.") from None
    limit, offset = max(limit, 0), max(offset, 0)
    chosen = items[offset : offset + limit]
    following = offset + limit if offset + limit < len(items) else None
    return chosen, len(items), None if following is None else str(following)


class Sizes(PersonHandler):
    def get(self) -> None:
        self.write_json(self.jobs.sizes_for(self.groups))


class Costs(PersonHandler):
    """The user's own spend: their server's $/hour, the month's spend and budget (their JupyterLab's
    status bar asks with their server's token)."""

    async def get(self) -> None:
        self.write_json(await self.jobs.costs(self.user, self.groups))


class JobList(PersonHandler):
    def get(self) -> None:
        query = self.get_query_argument
        status = query("status", None)
        name = query("name", None)
        definition = query("job_definition_id", None)
        tags = self.get_query_arguments("tags")
        try:
            since = int(query("start_time", None) or 0)
        except ValueError:
            raise JobError("start_time is a number of milliseconds.") from None
        models = [
            job_model(j, self.jobs.clock())
            for j in self.jobs.store.jobs(owner=self.user)
            if (not status or j.status == status)
            and (not name or j.name.startswith(name))
            and (not definition or j.job_definition_id == definition)
            and (not since or (j.start_time or 0) >= since)
            and all(t in j.tags for t in tags)
        ]
        chosen, total, following = page(models, lambda k: query(k, None))
        result: dict[str, Any] = {"jobs": chosen, "total_count": total}
        if following is not None:
            result["next_token"] = following
        self.write_json(result)

    async def post(self) -> None:
        body = self.body()
        job = await self.jobs.create_job(self.user, self.groups, body)
        created = {
            "job_id": job.job_id,
            "input_prefix": job_model(job, self.jobs.clock())["output_prefix"] + "input/",
        }
        if body.get("input_path") is not None:
            # Read from the user's folder, queued already: there is nothing to stage.
            created = {"job_id": job.job_id, "input_path": body["input_path"], "status": job.status}
        self.write_json(created, 201)


class JobCount(PersonHandler):
    def get(self) -> None:
        status = self.get_query_argument("status", IN_PROGRESS)
        self.write_json({"count": len(self.jobs.store.jobs(owner=self.user, statuses=[status]))})


class JobItem(PersonHandler):
    def get(self, job_id: str) -> None:
        self.write_json(job_model(self.own_job(job_id), self.jobs.clock()))

    def patch(self, job_id: str) -> None:
        job = self.own_job(job_id)
        body = self.body()
        if body.get("status") not in (None, "STOPPED"):
            raise JobError("A job's status can only be set to STOPPED (POST .../stop).")
        if "name" in body:
            name = str(body["name"] or "").strip()
            if not name or len(name) > 255:
                raise JobError("A job needs a name (at most 255 characters).")
            self.jobs.store.update(job, name=name)
        self.set_status(204)
        self.finish()

    async def delete(self, job_id: str) -> None:
        await self.jobs.delete_job(self.own_job(job_id))
        self.set_status(204)
        self.finish()


class JobStart(PersonHandler):
    async def post(self, job_id: str) -> None:
        job = self.jobs.start_job(self.own_job(job_id), self.body().get("packaged_files"))
        self.write_json(job_model(job, self.jobs.clock()))
        await self.jobs.tick()


class JobStop(PersonHandler):
    async def post(self, job_id: str) -> None:
        job = await self.jobs.stop_job(self.own_job(job_id))
        self.write_json(job_model(job, self.jobs.clock()))


class DefinitionList(PersonHandler):
    def get(self) -> None:
        query = self.get_query_argument
        name = query("name", None)
        models = [
            definition_model(d)
            for d in self.jobs.store.definitions(owner=self.user)
            if d.staged and (not name or d.name.startswith(name))
        ]
        chosen, total, following = page(models, lambda k: query(k, None))
        result: dict[str, Any] = {"job_definitions": chosen, "total_count": total}
        if following is not None:
            result["next_token"] = following
        self.write_json(result)

    async def post(self) -> None:
        definition = await self.jobs.create_definition(self.user, self.groups, self.body())
        model = definition_model(definition)
        self.write_json(
            {"job_definition_id": definition.job_definition_id, "input_prefix": model["input_prefix"]}, 201
        )


class DefinitionItem(PersonHandler):
    def get(self, definition_id: str) -> None:
        self.write_json(definition_model(self.own_definition(definition_id)))

    def patch(self, definition_id: str) -> None:
        self.jobs.update_definition(self.own_definition(definition_id), self.groups, self.body())
        self.set_status(204)
        self.finish()

    async def delete(self, definition_id: str) -> None:
        await self.jobs.delete_definition(self.own_definition(definition_id))
        self.set_status(204)
        self.finish()


class DefinitionStart(PersonHandler):
    def post(self, definition_id: str) -> None:
        definition = self.own_definition(definition_id)
        self.jobs.start_definition(definition, self.body().get("packaged_files"))
        self.write_json(definition_model(definition))


class DefinitionRun(PersonHandler):
    async def post(self, definition_id: str) -> None:
        definition = self.own_definition(definition_id)
        job = await self.jobs.run_definition(definition, self.body().get("parameters"))
        self.write_json({"job_id": job.job_id}, 201)
        await self.jobs.tick()


class RunReport(JsonHandler):
    """A job instance's report (`started`, `finished`), with its run's secret as a bearer token."""

    async def post(self, job_id: str, event: str) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        job = self.jobs.reporting_job(job_id, secret.strip()) if scheme.lower() == "bearer" else None
        if job is None:
            raise web.HTTPError(403, "Not the report of a running job.")
        body = self.body()
        if event == "started":
            self.jobs.report_started(job, body)
        else:
            await self.jobs.report_finished(job, body)
        self.set_status(204)
        self.finish()


class Metrics(PersonHandler):
    """Prometheus metrics, for hub admins and tokens with `read:metrics`."""

    def get(self) -> None:
        if not (self.model.get("admin") or "read:metrics" in self.model.get("scopes", [])):
            raise web.HTTPError(403, "Metrics are for administrators.")
        registry = CollectorRegistry()
        registry.register(JobsCollector(self.jobs))
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        # And the process's own: the launches of job instances by outcome (spawner/launcher.py).
        self.finish(generate_latest(registry) + generate_latest(REGISTRY))


class JobsCollector:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def collect(self):
        counts = self.jobs.store.counts_by_status()
        runs = CounterMetricFamily(
            "ec2hub_job_runs", "Jobs that ended, by outcome (COMPLETED, FAILED, STOPPED).", labels=["outcome"]
        )
        for outcome in ENDED:
            runs.add_metric([outcome], counts.get(outcome, 0))
        yield runs
        yield GaugeMetricFamily(
            "ec2hub_jobs_queued", "Jobs waiting for a slot or their launch.", counts.get(QUEUED, 0)
        )
        yield GaugeMetricFamily(
            "ec2hub_job_instances_running",
            "Job instances running (jobs in progress or stopping).",
            counts.get(IN_PROGRESS, 0) + counts.get(STOPPING, 0),
        )


class NotFound(JsonHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404, "Not found.")


def make_app(
    prefix: str,
    jobs: Jobs,
    *,
    hub_auth: HubAuth,
    groups_of: Callable[[str], Awaitable[list[str] | None]],
    extra: Mapping[str, Any] | None = None,
) -> web.Application:
    api = url_path_join(prefix, "api")
    return web.Application(
        [
            (url_path_join(api, "sizes"), Sizes),
            (url_path_join(api, "costs"), Costs),
            (url_path_join(api, "jobs"), JobList),
            (url_path_join(api, "jobs", "count"), JobCount),
            (url_path_join(api, "jobs", f"({ID})"), JobItem),
            (url_path_join(api, "jobs", f"({ID})", "start"), JobStart),
            (url_path_join(api, "jobs", f"({ID})", "stop"), JobStop),
            (url_path_join(api, "job_definitions"), DefinitionList),
            (url_path_join(api, "job_definitions", f"({ID})"), DefinitionItem),
            (url_path_join(api, "job_definitions", f"({ID})", "start"), DefinitionStart),
            (url_path_join(api, "job_definitions", f"({ID})", "jobs"), DefinitionRun),
            (url_path_join(api, "runs", f"({ID})", "(started|finished)"), RunReport),
            (url_path_join(prefix, "metrics"), Metrics),
            (r".*", NotFound),
        ],
        jobs=jobs,
        hub_auth=hub_auth,
        groups_of=groups_of,
        **dict(extra or {}),
    )


__all__ = ["SORTABLE", "make_app"]
