"""Config dataclasses built from JSON are checked against their annotations, naming the bad key."""

import pytest

from hashcondense.condense import CondenseConfig
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import EvalConfig


def test_numbers_from_json_fit_their_fields():
    config = EvalConfig.from_dict({"bits": 32, "topk": None, "train": {"lr": 1, "eval_epochs": [5, 10]}})
    assert config.train.lr == 1 and config.topk is None  # JSON's whole 1 is a fine float
    assert CondenseConfig.from_dict({"ipc": 2, "lr_img": 1, "time_budget": None}).ipc == 2


@pytest.mark.parametrize(
    "data, message",
    [
        ({"ipc": "10"}, "config key ipc = '10' should be a whole number"),
        ({"ipc": True}, "config key ipc = True should be a whole number"),
        ({"lr_img": "fast"}, "config key lr_img = 'fast' should be a number or null"),
        ({"arch_kwargs": [32]}, "config key arch_kwargs = [32] should be an object"),
        ({"clamp": 1}, "config key clamp = 1 should be true or false or null"),
    ],
)
def test_condense_config_of_the_wrong_kind_is_refused(data, message):
    with pytest.raises(HashCondenseError) as info:
        CondenseConfig.from_dict(data)
    assert message in str(info.value) and "\n" not in str(info.value)
