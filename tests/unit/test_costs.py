"""The cost ledger: a scripted day of instances (launches, stops, starts, a resize, spot, a job, a
termination) observed round by round with an injected clock adds up to the cents expected, whoever
looks when, and a restart of the hub in the middle loses nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hub.costs.ledger import COMPUTE, VOLUME, Ledger, Observation, total
from hub.costs.prices import Prices

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)  # two hours before midnight
HOUR = 3600
PRICES = Prices.load()
GP3 = 50 * 0.08 / 730  # a 50 GB volume, per hour


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, hours: float) -> Clock:
        self.now = T0.timestamp() + hours * HOUR
        return self


def seen(instance_id: str, state: str, since_hours: float, **fields) -> Observation:
    values = {
        "user": "alice",
        "purpose": "server",
        "instance_type": "m6i.xlarge",
        "spot": False,
        "volume_gb": 50,
        **fields,
    }
    return Observation(instance_id, state=state, since=int(T0.timestamp() + since_hours * HOUR), **values)


def test_prices_come_from_the_table_with_its_date():
    assert PRICES.region == "us-east-1" and PRICES.as_of
    assert PRICES.hourly("m6i.xlarge") == 0.192
    assert PRICES.hourly("m6i.xlarge", spot=True) == 0.0768
    assert PRICES.hourly("t3.medium", spot=True) == 0.0416  # no spot price known: on-demand
    assert PRICES.hourly("x9.unknown") is None
    assert PRICES.volume_hourly(730) == pytest.approx(0.08)


# (hours after T0 when a round looks, what it sees). alice's server runs 22:00-00:00, stops, is
# resized to m6i.4xlarge, runs 01:00-01:30 and is terminated; bob's spot job runs 22:30-23:15 (and is
# listed terminated for a while); the rounds come late, between the state changes.
ROUNDS = [
    (0.1, [seen("i-alice", "running", 0)]),
    (
        0.6,
        [seen("i-alice", "running", 0), seen("i-job", "running", 0.5, user="bob", purpose="job", spot=True)],
    ),
    (
        1.5,
        [
            seen("i-alice", "running", 0),
            seen("i-job", "terminated", 1.25, user="bob", purpose="job", spot=True),
        ],
    ),
    (2.4, [seen("i-alice", "stopped", 2.0)]),
    (2.9, [seen("i-alice", "stopped", 2.0, instance_type="m6i.4xlarge")]),
    (3.2, [seen("i-alice", "running", 3.0, instance_type="m6i.4xlarge")]),
    (3.7, [seen("i-alice", "terminated", 3.5, instance_type="m6i.4xlarge")]),
    (5.0, []),  # gone from the listings
]

ALICE_COMPUTE = 2 * 0.192 + 0.5 * 0.768
ALICE_VOLUME = 3.5 * GP3
BOB_JOB = 0.75 * 0.0768


def run_rounds(ledger_for, clock: Clock, rounds=ROUNDS) -> Ledger:
    ledger = ledger_for()
    for hours, observed in rounds:
        ledger.clock = clock.at(hours)
        ledger.observe(observed)
    return ledger


def test_a_scripted_day_adds_up_to_the_expected_cents(tmp_path):
    clock = Clock()
    ledger = run_rounds(lambda: Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock), clock)
    spend = ledger.spend(T0 - timedelta(days=1))
    assert round(total(spend, user="alice", kind=COMPUTE), 4) == round(ALICE_COMPUTE, 4)
    assert round(total(spend, user="alice", kind=VOLUME), 6) == round(ALICE_VOLUME, 6)
    assert round(total(spend, user="bob", purpose="job"), 4) == round(BOB_JOB + 0.75 * GP3, 4)
    # Split at midnight UTC: alice's first two hours on the 30th, the rest on the 1st.
    assert total(spend, user="alice", kind=COMPUTE, day="2026-11-30") == pytest.approx(2 * 0.192)
    assert total(spend, user="alice", kind=COMPUTE, day="2026-12-01") == pytest.approx(0.5 * 0.768)
    assert round(total(spend) * 100) == round((ALICE_COMPUTE + ALICE_VOLUME + BOB_JOB + 0.75 * GP3) * 100)


def test_a_restart_in_the_middle_loses_nothing_and_counts_nothing_twice(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    clock = Clock()
    first = run_rounds(lambda: Ledger(url, PRICES, clock), clock, ROUNDS[:3])
    first.engine.dispose()
    # The hub is down for 40 minutes across alice's stop; the new one reads the same database.
    restarted = run_rounds(lambda: Ledger(url, PRICES, clock), clock, ROUNDS[3:])
    spend = restarted.spend(T0 - timedelta(days=1))
    assert total(spend, user="alice", kind=COMPUTE) == pytest.approx(ALICE_COMPUTE)
    assert total(spend, user="bob", purpose="job", kind=COMPUTE) == pytest.approx(BOB_JOB)


def test_a_hub_that_first_looks_long_after_a_launch_counts_from_the_launch(tmp_path):
    clock = Clock().at(1.0)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    ledger.observe([seen("i-alice", "running", 0)])  # launched an hour before the hub first looked
    spend = ledger.spend(T0)
    assert total(spend, kind=COMPUTE) == pytest.approx(0.192)
    # A second look at the same run continues it; the spend runs up to the clock.
    ledger.clock = clock.at(1.5)
    ledger.observe([seen("i-alice", "running", 0)])
    assert total(ledger.spend(T0), kind=COMPUTE) == pytest.approx(1.5 * 0.192)


def test_a_stop_and_start_between_two_rounds_counts_from_the_last_round_that_saw_it(tmp_path):
    clock = Clock()
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    ledger.observe([seen("i-alice", "running", 0)])
    ledger.clock = clock.at(1.0)
    ledger.observe([seen("i-alice", "running", 0)])
    ledger.clock = clock.at(2.0)  # it stopped at some time after 1.0 and started again at 1.5
    ledger.observe([seen("i-alice", "running", 1.5)])
    assert total(ledger.spend(T0), kind=COMPUTE) == pytest.approx((1.0 + 0.5) * 0.192)


def test_an_instance_type_without_a_price_counts_its_volume_only(tmp_path):
    clock = Clock()
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    ledger.observe([seen("i-odd", "running", 0, instance_type="x9.unknown")])
    ledger.clock = clock.at(1.0)
    ledger.observe([seen("i-odd", "running", 0, instance_type="x9.unknown")])
    spend = ledger.spend(T0)
    assert total(spend, kind=COMPUTE) == 0
    assert total(spend, kind=VOLUME) == pytest.approx(GP3)


def test_observations_read_ec2s_own_times():
    launched = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    running = {
        "InstanceId": "i-1",
        "InstanceType": "m6i.xlarge",
        "InstanceLifecycle": "spot",
        "State": {"Name": "running"},
        "LaunchTime": launched,
        "Tags": [{"Key": "ec2hub:user", "Value": "alice"}, {"Key": "ec2hub:purpose", "Value": "dask-worker"}],
    }
    observed = Observation.of(running, volume_gb=50)
    assert (observed.user, observed.purpose, observed.spot) == ("alice", "dask-worker", True)
    assert observed.since == int(launched.timestamp())
    stopped = {
        **running,
        "State": {"Name": "stopped"},
        "StateTransitionReason": "User initiated (2026-12-01 04:30:15 GMT)",
    }
    assert Observation.of(stopped, 50).since == int(launched.timestamp()) + 5415
    assert Observation.of({**stopped, "StateTransitionReason": ""}, 50).since == 0


def test_the_costs_page_report_splits_the_month_by_user_group_purpose_and_day():
    from hub.instances.costs import NO_USER, CostReport

    spend = {
        ("alice", "server", COMPUTE, "2026-12-01"): 1.0,
        ("alice", "job", COMPUTE, "2026-12-02"): 0.5,
        ("alice", "server", VOLUME, "2026-12-02"): 0.25,
        ("bob", "dask-worker", COMPUTE, "2026-12-01"): 3.0,
        ("", "pool", COMPUTE, "2026-12-01"): 0.1,
    }
    report = CostReport.of(spend, {"alice": ["ml-team", "analysts"], "bob": ["ml-team"]})
    assert [(s.name, round(s.total, 2)) for s in report.users] == [
        ("bob", 3.0),
        ("alice", 1.75),
        (NO_USER, 0.1),
    ]
    assert report.users[1].by_purpose == {"server": 1.25, "job": 0.5}
    assert report.groups == {"ml-team": 4.75, "analysts": 1.75}
    assert list(report.purposes) == ["server", "pool", "dask-worker", "job"]
    assert report.total == pytest.approx(4.85)
    chart = report.chart()
    assert chart["labels"] == ["2026-12-01", "2026-12-02"]
    assert {d["label"]: d["data"] for d in chart["datasets"]}["job"] == [0.0, 0.5]


def test_a_run_no_round_saw_running_counts_from_its_launch_to_its_end_once(tmp_path):
    clock = Clock().at(1.0)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    job = seen("i-job", "terminated", 0.5, purpose="job", instance_type="t3.medium", volume_gb=0)
    job = Observation(**{**job.__dict__, "launched": int(T0.timestamp() + 0.25 * HOUR)})
    ledger.observe([job])
    ledger.clock = clock.at(1.1)
    ledger.observe([job])  # listed terminated for a while: counted once
    assert total(ledger.spend(T0), purpose="job") == pytest.approx(0.25 * 0.0416)


def budgets_with(tmp_path, clock: Clock, value: dict):
    from hub.costs.budgets import Budgets, BudgetSettings

    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    return ledger, Budgets(BudgetSettings.from_env({"EC2HUB_BUDGETS": json.dumps(value)}), ledger)


BUDGETS = {
    "user": {"soft": 0.2, "hard": 0.35},
    "groups": {"ml-team": {"soft": 0.4, "hard": 0.45}},
    "contact": "the platform team",
}


async def test_over_a_hard_limit_new_work_is_refused_with_the_budget_the_spend_and_who_to_ask(tmp_path):
    clock = Clock()
    ledger, budgets = budgets_with(tmp_path, clock, BUDGETS)
    clock.at(3.0)  # 01:00 on the 1st: this month's first hour
    ledger.observe(
        [
            seen("i-a", "running", 3, volume_gb=0),
            seen("i-b", "running", 3, user="bob", instance_type="t3.medium", volume_gb=0),
        ]
    )
    clock.at(4.0)  # alice $0.192, bob $0.0416: the team $0.2336
    standing = await budgets.standing("alice", ["ml-team"], {"ml-team": ["alice", "bob"]})
    assert standing.refusal("a job") is None and standing.warning() is None
    clock.at(4.5)  # alice $0.288, over her soft limit
    standing = await budgets.standing("alice", ["ml-team"], {"ml-team": ["alice", "bob"]})
    assert standing.refusal("a job") is None
    assert (
        standing.warning()
        == "Nearing this month's budget: you have spent $0.2880 of your $0.2000 soft limit."
    )
    clock.at(5.0)  # alice $0.384 (over her hard limit), the team $0.4672 (over its hard limit)
    standing = await budgets.standing("alice", ["ml-team"], {"ml-team": ["alice", "bob"]})
    message = standing.refusal("a cluster")
    assert message.startswith("Over budget this month: you have spent $0.3840 of your $0.3500;")
    assert "group ml-team has spent $0.4672 of its $0.4500 budget. A cluster cannot start" in message
    assert message.endswith("Ask the platform team to raise the budget or lift the limit for you.")
    # bob is over his group's hard limit, not his own.
    bobs = await budgets.standing("bob", ["ml-team"], {"ml-team": ["alice", "bob"]})
    assert "you have spent" not in bobs.refusal("a job") and "group ml-team" in bobs.refusal("a job")
    # A lift for a day: new work starts again, the warning says until when.
    budgets.lift("alice", T0 + timedelta(days=1), by="admin")
    lifted = await budgets.standing("alice", ["ml-team"], {"ml-team": ["alice", "bob"]})
    assert lifted.refusal("a job") is None
    assert "limits lifted until 2026-12-01 22:00 UTC" in lifted.warning()
    clock.at(25.0)  # the lift has ended
    assert (await budgets.standing("alice", ["ml-team"], {"ml-team": ["alice", "bob"]})).refusal("a job")


@pytest.mark.parametrize(
    "value, problem",
    [
        ("{", "not JSON"),
        ('{"users": {}}', "an object of user, groups, large_above and contact"),
        ('{"user": {"soft": 5, "hard": 2}}', "soft limit is above its hard limit"),
        ('{"user": {"hard": -1}}', "amounts in USD above 0"),
        ('{"groups": {"t": {"max": 1}}}', "group t is an object with soft and/or hard"),
        ('{"large_above": "big"}', "large_above is a price"),
    ],
)
def test_a_wrong_budget_setting_stops_the_hub_with_what_is_wrong(value, problem):
    from hub.costs.budgets import BudgetSettings
    from hub.settings import SettingsError

    with pytest.raises(SettingsError, match=problem):
        BudgetSettings.from_env({"EC2HUB_BUDGETS": value})
    assert BudgetSettings.from_env({}) is None


def test_a_claimed_pool_instance_counts_for_its_user_from_the_claim(tmp_path):
    clock = Clock()
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", PRICES, clock)
    ledger.observe([seen("i-pool", "running", 0, user="", purpose="pool", volume_gb=0)])
    ledger.clock = clock.at(1.0)  # claimed by alice an hour after its launch
    ledger.observe([seen("i-pool", "running", 0, volume_gb=0)])
    ledger.clock = clock.at(3.0)
    ledger.observe([seen("i-pool", "running", 0, volume_gb=0)])
    spend = ledger.spend(T0)
    assert total(spend, user="", purpose="pool") == pytest.approx(0.192)
    assert total(spend, user="alice", purpose="server") == pytest.approx(2 * 0.192)


def test_a_size_the_table_does_not_price_is_priced_as_the_spawn_form_shows_it():
    from spawner.profiles import validate_profiles

    sizes = validate_profiles(
        [
            {
                "slug": "huge",
                "display_name": "Huge",
                "description": "Very large.",
                "instance_type": "x9.huge",
                "vcpu": 64,
                "memory_gib": 512,
                "price_per_hour": 5.0,
                "spot": True,
                "spot_discount": 0.5,
            }
        ]
    )
    priced = PRICES.with_sizes(sizes)
    assert (priced.hourly("x9.huge"), priced.hourly("x9.huge", spot=True)) == (5.0, 2.5)
    assert priced.hourly("m6i.xlarge") == 0.192  # the table first


def test_a_csv_cell_never_runs_as_a_formula():
    from hub.instances.costs import as_text

    assert as_text('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert [as_text(c) for c in ("alice", "-1", "@sum", "ml-team")] == ["alice", "'-1", "'@sum", "ml-team"]


async def test_over_a_hard_limit_a_server_above_the_cheapest_size_does_not_start(tmp_path):
    from types import SimpleNamespace

    from jupyterhub.spawner import SpawnException

    from hub.costs.budgets import BudgetSettings
    from hub.costs.in_hub import HubCosts
    from spawner.profiles import DEFAULT_PROFILES, validate_profiles

    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    ledger = Ledger(url, PRICES)
    now = int(datetime.now(UTC).timestamp())
    ledger.observe(
        [Observation("i-1", "alice", "server", "m6i.xlarge", False, 0, "running", since=now - 600)]
    )
    settings = BudgetSettings.from_env({"EC2HUB_BUDGETS": json.dumps({"user": {"hard": 0.0001}})})
    costs = HubCosts(settings, url, "us-east-1")
    check = costs.check_server
    team = SimpleNamespace(name="ml", users=[])

    def spawner_for(size: str):
        return SimpleNamespace(
            size=size,
            region="us-east-1",
            profile_list=lambda: validate_profiles(DEFAULT_PROFILES),
            user=SimpleNamespace(name="alice", groups=[team]),
            group_names=lambda: ["ml"],
        )

    await check(spawner_for("small"))  # the cheapest size still starts: her data stays in reach
    with pytest.raises(SpawnException) as refused:
        await check(spawner_for("large"))
    message = refused.value.jupyterhub_message
    assert message.startswith("Over budget this month: you have spent $0.0")
    assert "A Large server ($0.768/hour) cannot start" in message
    assert message.endswith("Sizes up to $0.042/hour still start.")
    assert costs.budgets(validate_profiles(DEFAULT_PROFILES)).refusals() == {"server": 1}


async def test_over_a_soft_limit_the_hub_shows_a_banner_the_spawn_form_the_spend_and_lab_the_rate(tmp_path):
    from types import SimpleNamespace

    from hub.costs.budgets import Budgets, BudgetSettings
    from hub.costs.in_hub import HubCosts
    from spawner.profiles import DEFAULT_PROFILES, validate_profiles

    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    now = int(datetime(2026, 12, 15, 12, tzinfo=UTC).timestamp())
    Ledger(url, PRICES, clock=lambda: now).observe(
        [Observation("i-1", "alice", "server", "m6i.xlarge", True, 0, "running", since=now - 3600)]
    )
    budgets = {"groups": {"ml": {"soft": 0.01, "hard": 100}}, "contact": "the data team"}
    settings = BudgetSettings.from_env({"EC2HUB_BUDGETS": json.dumps(budgets)})
    costs = HubCosts(settings, url, "us-east-1", clock=lambda: now)
    sizes = validate_profiles(DEFAULT_PROFILES)
    team = SimpleNamespace(name="ml", users=[])
    alice = SimpleNamespace(name="alice", groups=[team], spawner=SimpleNamespace(profile_list=lambda: sizes))
    team.users = [alice]

    assert costs.banner(None) == ""  # the sign-in page
    await costs.post_auth_hook(None, SimpleNamespace(find_user=lambda name: alice), {"name": "alice"})
    banner = costs.banner(alice)
    # An hour of spot m6i.xlarge: over the group's soft limit, far under its hard one.
    assert banner == "Nearing this month's budget: group ml has spent $0.0768 of its $0.0100 soft limit."

    spawner = SimpleNamespace(
        user=alice, size="medium", stop_reason="", profile_list=lambda: sizes, group_names=lambda: ["ml"]
    )
    form = await costs.spawn_form(spawner)
    assert "This month you have spent $0.0768 (prices of 2026-12-01)." in form
    assert "Group ml has spent $0.0768 of its $100.00 budget." in form
    await costs.check_server(SimpleNamespace(**{**vars(spawner), "size": "large"}))  # under hard: starts

    # What alice's JupyterLab shows (the jobs service answers it): her server's rate and her month.
    summary = await Budgets(settings, Ledger(url, PRICES, clock=lambda: now)).summary(
        "alice", ["ml"], {"ml": ["alice"]}
    )
    assert summary["server"] == {"size": "m6i.xlarge", "hourly": 0.0768, "spot": True}
    assert summary["month_to_date"] == 0.0768 and summary["budget"] is None
    assert summary["warning"] == banner and summary["refusal"] is None
    assert (summary["prices_as_of"], summary["contact"]) == ("2026-12-01", "the data team")


def test_the_hubs_costs_are_one_object_however_often_the_config_is_copied(tmp_path):
    import copy

    from hub.costs.in_hub import HubCosts

    costs = HubCosts(None, f"sqlite:///{tmp_path}/ledger.sqlite", "us-east-1")
    copied = copy.deepcopy({"hook": costs.post_auth_hook, "banner": costs.banner})
    assert copied["hook"].__self__ is copied["banner"].__self__ is costs
