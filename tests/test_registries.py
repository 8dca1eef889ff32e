"""The names the registries read from their modules' source (used before torch loads) are exactly the
names the modules register when imported."""

import pytest

from hashcondense.registries import DATASETS, HASHING, METHODS, MODELS
from hashcondense.registry import declared_dict_keys


@pytest.mark.parametrize("registry", [DATASETS, HASHING, METHODS, MODELS], ids=lambda r: r.kind)
def test_declared_names_are_the_registered_names(registry):
    declared = sorted(registry.declared())
    assert declared == registry.names()  # names() imports every module of the package


def test_declared_presets_are_the_methods_presets():
    for name in METHODS.names():
        keys = declared_dict_keys(METHODS.declared()[name], "presets")
        presets = METHODS.get(name).presets
        assert keys is None and not presets or sorted(keys) == sorted(presets), name


def test_every_method_takes_the_cpu_preset_that_the_experiment_files_name():
    from hashcondense.condense.config import CondenseConfig, check_names

    for name in METHODS.names():
        assert "cpu" in METHODS.get(name).presets, name
        check_names(CondenseConfig(method=name, preset="cpu"))


def test_check_refuses_an_unknown_name_with_the_valid_ones():
    from hashcondense.errors import HashCondenseError

    with pytest.raises(HashCondenseError, match="unknown condensation method 'iemm'; choose one of: dm, dsa"):
        METHODS.check("iemm")
    assert METHODS.check("IEM") == "iem"
