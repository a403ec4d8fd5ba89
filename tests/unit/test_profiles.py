"""Sizes: parse (pure), validate against what a user may pick, and the form that shows them."""

from __future__ import annotations

import pytest

from spawner.profiles import (
    DEFAULT_PROFILES,
    Choice,
    ChoiceError,
    Profile,
    parse_choice,
    parse_form,
    render_form,
    validate_choice,
    validate_profiles,
)

PROFILES = [Profile.from_config(p) for p in DEFAULT_PROFILES]
EVERYONE = [p for p in PROFILES if not p.groups]


def test_form_fields_become_user_options():
    assert parse_form({"size": ["large"], "spot": ["large"]}) == {"size": "large", "spot": True}
    assert parse_form({"size": ["large"], "spot": ["medium"]}) == {"size": "large", "spot": False}
    assert parse_form({"size": ["small"], "_xsrf": ["token"]}) == {"size": "small"}
    assert parse_form({"size": ["a", "b"], "image": ["x"]}) == {"size": ["a", "b"], "image": ["x"]}


def test_no_choice_gets_the_default_size():
    assert validate_choice(Choice(None), PROFILES, []) == (PROFILES[1], False)


def test_gpu_is_for_its_group_only():
    gpu = Choice("gpu")
    assert validate_choice(gpu, PROFILES, ["gpu-users"])[0].instance_type == "g5.xlarge"
    with pytest.raises(ChoiceError) as refused:
        validate_choice(gpu, PROFILES, ["physics"])
    assert refused.value.status_code == 400
    assert "not open to you" in refused.value.log_message
    assert "You may pick: small, medium, large." in refused.value.log_message


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"size": "xl"}, "unknown"),
        ({"size": "t3.2xlarge"}, "unknown"),
        ({"size": ["small", "large"]}, "one name"),
        ({"size": 3}, "one name"),
        ({"size": "small", "spot": "yes"}, "true or false"),
        ({"size": "small", "spot": True}, "not offered"),
        ({"size": "small", "instance_type": "p5.48xlarge"}, "Unknown option"),
        ({"image": ["ami-evil"]}, "Unknown option"),
    ],
)
def test_forged_or_malformed_choices_are_refused_with_the_allowed_sizes(options, problem):
    with pytest.raises(ChoiceError) as refused:
        choice = parse_choice(options, EVERYONE)
        validate_choice(choice, PROFILES, [])
    assert problem in refused.value.log_message
    assert "You may pick: small, medium, large." in refused.value.log_message


def test_spot_where_offered():
    assert validate_choice(Choice("large", spot=True), PROFILES, []) == (PROFILES[2], True)


def test_the_form_shows_prices_and_only_open_sizes():
    form = render_form(PROFILES, [])
    assert 'value="medium" checked' in form
    assert "$0.192/hour" in form and "16 GiB memory" in form
    assert "g5.xlarge" not in form
    with_gpu = render_form(PROFILES, ["gpu-users"])
    assert "1 × NVIDIA A10G GPU" in with_gpu
    assert render_form(PROFILES, [], current="large").count("checked") == 1
    assert 'value="large" checked' in render_form(PROFILES, [], current="large")


def test_a_typo_in_the_sizes_is_refused_with_what_is_wrong():
    from traitlets import TraitError

    from spawner import EC2Spawner

    typo = [{**DEFAULT_PROFILES[0], "instance_typ": "t3.large"}]
    with pytest.raises(ValueError, match="unknown keys \\['instance_typ'\\]"):
        validate_profiles(typo)
    with pytest.raises(ValueError, match="share a slug"):
        validate_profiles([DEFAULT_PROFILES[0], DEFAULT_PROFILES[0]])
    with pytest.raises(TraitError, match="c.EC2Spawner.profiles: size 'small': unknown keys"):
        EC2Spawner(profiles=typo)


def test_the_hub_refuses_to_start_with_a_typo_in_the_sizes(tmp_path):
    from traitlets.config import Config

    from hub.instances import configured_profiles
    from hub.settings import SettingsError

    c = Config()
    c.EC2Spawner.profiles = [{"slug": "small", "display_name": "Small"}]
    with pytest.raises(SettingsError, match="missing keys"):
        configured_profiles(c)


def test_the_form_escapes_what_it_shows():
    hostile = Profile.from_config({**DEFAULT_PROFILES[0], "description": "<script>alert(1)</script>"})
    form = render_form([hostile], [], stop_reason="<img src=x onerror=alert(1)>")
    assert "<script>" not in form and "&lt;script&gt;" in form
    assert "<img" not in form and "Your server stopped: &lt;img" in form
