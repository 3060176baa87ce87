"""shared/Makefile builds MaasLayer as `sam build` runs it: a scratch copy of shared/, ARTIFACTS_DIR set.

The real lock's wheels would need the package index, so pip installs tiny real wheels from a local folder
here, through the same Makefile target, flags and checks; infra/build_bundle.py (`make bench`) builds the
real layer and holds it to the same checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from infra.layer_lock import BUILD_FILES, OFFLINE_ONLY_SUBPACKAGES, layer_problems, read_lock

from tests.support.layer_make import SHARED, make_layer, scratch_copy
from tests.support.wheels import BuiltWheel, build_wheel, lock_text


@pytest.fixture
def wheels(tmp_path: Path) -> list[BuiltWheel]:
    house = tmp_path / "wheelhouse"
    return [
        # Declares a dependency the lock does not list: --no-deps must leave it out.
        build_wheel(house, "alpha", "1.0", requires=("gamma>=1",)),
        build_wheel(
            house, "beta", "2.0", tag="cp312-cp312-manylinux2014_x86_64", module_text="ARCH = 'x86_64'"
        ),
        build_wheel(
            house, "beta", "2.0", tag="cp312-cp312-manylinux2014_aarch64", module_text="ARCH = 'arm64'"
        ),
        build_wheel(house, "gamma", "1.0"),
    ]


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_layer_holds_the_lock_for_its_architecture_and_the_online_maas(
    tmp_path: Path, wheels: list[BuiltWheel], arch: str
) -> None:
    locked = [wheel for wheel in wheels if wheel.name != "gamma"]
    scratch = scratch_copy(tmp_path, lock_text(locked))

    done = make_layer(scratch, tmp_path / "artifacts", wheels[0].path.parent, arch)

    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "artifacts" / "python"
    assert layer_problems(site, read_lock(scratch / "requirements.lock")) == []
    assert (site / "beta" / "__init__.py").read_text(encoding="utf-8") == f"ARCH = '{arch}'"
    assert not (site / "gamma").exists()
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["python"]
    assert (site / "maas" / "apps" / "infer.py").is_file()
    for offline in OFFLINE_ONLY_SUBPACKAGES:
        assert (SHARED / offline).is_dir()
        assert not (site / offline).exists()
    for name in BUILD_FILES:
        assert not (site / name).exists()


def test_a_wheel_whose_hash_the_lock_does_not_list_is_refused(
    tmp_path: Path, wheels: list[BuiltWheel]
) -> None:
    alpha = wheels[0]
    wrong = lock_text([alpha]).replace(alpha.sha256, "0" * 64)
    scratch = scratch_copy(tmp_path, wrong)

    done = make_layer(scratch, tmp_path / "artifacts", alpha.path.parent, "x86_64")

    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stdout + done.stderr


def test_an_architecture_the_makefile_does_not_know_is_refused(
    tmp_path: Path, wheels: list[BuiltWheel]
) -> None:
    scratch = scratch_copy(tmp_path, lock_text(wheels[:1]))

    done = make_layer(scratch, tmp_path / "artifacts", wheels[0].path.parent, "ppc64le")

    assert done.returncode != 0
    assert "expected x86_64 or arm64, got 'ppc64le'" in done.stderr
    assert not (tmp_path / "artifacts").exists()


def test_layer_problems_name_an_extra_a_missing_and_a_moved_distribution(
    tmp_path: Path, wheels: list[BuiltWheel]
) -> None:
    alpha, beta = wheels[0], wheels[1]
    scratch = scratch_copy(tmp_path, lock_text([alpha, beta]))
    assert make_layer(scratch, tmp_path / "artifacts", alpha.path.parent, "x86_64").returncode == 0
    site = tmp_path / "artifacts" / "python"
    lock = read_lock(scratch / "requirements.lock")
    (site / "gamma-1.0.dist-info").mkdir()
    (site / "gamma-1.0.dist-info" / "METADATA").write_text("Name: gamma\nVersion: 1.0\n", encoding="utf-8")
    shutil.rmtree(site / "beta-2.0.dist-info")
    metadata = site / "alpha-1.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text(encoding="utf-8").replace("1.0", "1.1"), encoding="utf-8")
    shutil.copytree(
        SHARED / "maas" / "cli", site / "maas" / "cli", ignore=shutil.ignore_patterns("__pycache__")
    )

    assert layer_problems(site, lock) == [
        "alpha is 1.1 in the layer, expected 1.0 (the lock)",
        "gamma 1.0 is in the layer but not in the lock",
        "beta 2.0 is in the lock but not in the layer",
        "maas/cli is offline only, but it is in the layer",
    ]
