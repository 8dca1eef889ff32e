"""IEM's and IDC's large-image ("ImageNet") defaults follow the images' size, not the dataset's name."""

import pytest

from hashcondense.condense.config import DatasetInfo
from hashcondense.registries import METHODS


def _info(name: str, size: int, classes: int = 10) -> DatasetInfo:
    return DatasetInfo(name=name, num_classes=classes, in_channels=3, image_size=size, num_train=100)


@pytest.mark.parametrize("name", ["imagenet10", "folder:/data/birds", "npz:/data/x.npz"])
def test_large_images_get_the_imagenet_settings_whatever_their_name(name):
    iem = METHODS.get("iem").default_settings(_info(name, 64, classes=20))
    assert (iem["factor"], iem["outer_loops"], iem["inner_loops"], iem["lr_img"]) == (3, 200, 200, 20.0)
    idc = METHODS.get("idc").default_settings(_info(name, 224))
    assert (idc["factor"], idc["outer_loops"]) == (3, 500) and idc["lr_img"] == pytest.approx(3e-3)


@pytest.mark.parametrize("name", ["imagenet10", "cifar10", "folder:/data/birds"])
def test_small_images_get_the_cifar_settings_whatever_their_name(name):
    iem = METHODS.get("iem").default_settings(_info(name, 32))
    assert (iem["factor"], iem["outer_loops"], iem["lr_img"]) == (2, 300, 0.005)
    idc = METHODS.get("idc").default_settings(_info(name, 32))
    assert (idc["factor"], idc["outer_loops"], idc["lr_img"]) == (2, 2000, 5e-3)


def test_imagenet_ten_takes_the_papers_rate_of_ten():
    assert METHODS.get("iem").default_settings(_info("imagenet10", 64))["lr_img"] == 10.0


@pytest.mark.parametrize(
    ("size", "num_train", "preset", "epochs"),
    [
        (32, 5_000, None, 20),  # CIFAR-10's retrieval split: Acc-DD's ~400 steps, not 2 epochs' ~40
        (32, 50_000, None, 2),  # Acc-DD's own CIFAR-10: its 2 epochs
        (32, 200_000, None, 2),  # never under 2 epochs
        (32, 5_000, "cpu", 2),  # the cpu preset's stored pool cells
        (64, 5_000, None, 10),  # large images: Acc-DD's ImageNet setting
    ],
)
def test_the_pool_sees_as_many_images_as_acc_dds_early_stage(size, num_train, preset, epochs):
    from hashcondense.condense.methods.iem import default_pool_epochs

    info = DatasetInfo(name="x", num_classes=10, in_channels=3, image_size=size, num_train=num_train)
    assert default_pool_epochs(info, preset) == epochs
