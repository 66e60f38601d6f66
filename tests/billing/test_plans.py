"""The plan table: defaults, operator overrides, and overrides that must not start a server."""

from __future__ import annotations

import json

import pytest

from voicestream.billing.plans import DEFAULT_PLANS, PLAN_NAMES, parse_plans
from voicestream.errors import ValidationFailed


def test_defaults_cover_every_plan_and_only_free_has_no_price() -> None:
    table = parse_plans(None)
    assert tuple(table.plans) == PLAN_NAMES
    assert [p.name for p in table.plans.values() if p.stripe_price_id is None] == ["free"]
    assert table.by_price("price_pro") == DEFAULT_PLANS["pro"]
    assert table.by_price("price_unknown") is None


def test_overrides_change_only_the_fields_given() -> None:
    table = parse_plans(
        json.dumps({"starter": {"stripe_price_id": "price_1Abc", "included_credits": 7}})
    )
    starter = table.get("starter")
    assert (starter.stripe_price_id, starter.included_credits) == ("price_1Abc", 7)
    assert starter.overage_cents_per_1000 == DEFAULT_PLANS["starter"].overage_cents_per_1000
    assert table.by_price("price_1Abc") is starter


def test_overage_rounds_up_to_a_whole_cent() -> None:
    plan = parse_plans(json.dumps({"pro": {"overage_cents_per_1000": 180}})).get("pro")
    assert plan.overage_cents(1) == 1
    assert plan.overage_cents(1000) == 180
    assert plan.overage_cents(0) == 0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"platinum": {}}', "unknown plan"),
        ('{"pro": {"colour": 1}}', "unknown field"),
        ('{"pro": {"included_credits": -1}}', "whole number"),
        ('{"pro": {"included_credits": true}}', "whole number"),
        ('{"pro": {"currency": "dollars"}}', "3-letter"),
        ('{"pro": {"stripe_price_id": "price_starter"}}', "share a Stripe price"),
        ('{"pro": 5}', "object of fields"),
    ],
)
def test_malformed_overrides_are_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_plans(text)


def test_an_unknown_plan_name_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed, match="unknown plan"):
        parse_plans(None).get("platinum")
