"""A load's budgets, checked before any download, and how a session holds its weights.

Given a chain of MatMuls with a few MiB of external data published to moto, the inference service loads it
as Lambda would. The machine's readings (resident memory, the function's memory) are handed in as fixed
numbers where a test needs a refusal, or an eviction, to be the same on every machine; the temp space a
mapped session keeps is the real one, read from /proc.
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from maas.config import Settings
from maas.errors import InsufficientStorage, IntegrityError, MaasError, ModelTooLarge
from maas.infer_types import InferenceRequest, Tensor
from maas.objects import MIN_PART_BYTES
from maas.registry import Manifest, ModelRef, ModelRegistry
from maas.registry.manifest import Quantization
from maas.runtime import (
    DISABLE_PREPACKING,
    LoadBudget,
    LoadedModel,
    MachineReadings,
    footprint_of,
    session_config,
)
from maas.runtime.budgets import DISK_HEADROOM_BYTES, MEMORY_MARGIN_SHARE
from maas.runtime.load_folders import LOCK_FILE
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET
from tests.support.external_data import (
    CHAIN_WIDTH,
    DATA_FILE,
    MiB,
    flip_last_bit,
    matmul_chain_model,
    private_folders,
    use_own_temp_dir,
)

NAME = "chain"
WEIGHTS_MIB = 4


def settings(**overrides: Any) -> Settings:
    return replace(Settings(bucket=TEST_BUCKET, provider="cpu"), **overrides)


def publish_chain(
    registry: ModelRegistry, weight_loading: Literal["mapped", "prepacked"] | None = None, name: str = NAME
) -> Manifest:
    files, draft = matmul_chain_model(WEIGHTS_MIB, weight_loading=weight_loading)
    return registry.publish(name, files, draft)


def infer(service: InferenceService, name: str, version: int) -> np.ndarray:
    rows = np.arange(2 * CHAIN_WIDTH, dtype=np.float32).reshape(2, CHAIN_WIDTH)
    response = service.infer(ModelRef(name, version=version), InferenceRequest([Tensor("x", "FP32", rows)]))
    [output] = response.outputs
    np.testing.assert_array_equal(output.array, rows)  # identity weights, however they are held
    return output.array


def prepacking_disabled(model: LoadedModel) -> bool:
    options = model.session.get_session_options()
    try:
        return bool(options.get_session_config_entry(DISABLE_PREPACKING[0]) == DISABLE_PREPACKING[1])
    except RuntimeError:  # onnxruntime's answer for an entry never set
        return False


def loaded(service: InferenceService, manifest: Manifest) -> LoadedModel:
    model = service.cache.peek(manifest.name, manifest.version)
    assert model is not None
    return model


def mapped_private_files(manifest: Manifest) -> set[str]:
    """Files of the version's private folders this process still maps, deleted as they are: their blocks
    stay allocated in the temp dir until the mapping goes."""
    prefix = str(Path(tempfile.gettempdir()).resolve() / f"maas-{manifest.name}-v{manifest.version}-")
    paths = (line.split(maxsplit=5)[-1] for line in Path("/proc/self/maps").read_text().splitlines())
    return {path for path in paths if path.startswith(prefix) and path.endswith(" (deleted)")}


def graph_mib_up(manifest: Manifest) -> int:
    return -(-sum(manifest.artifact(path).bytes for path in manifest.graph_files) // MiB)


class Machine:
    """Fixed readings: a function of `function_mib` whose process holds `base_mib` beside the models cached
    by `service`, as a Lambda container would, and a disk with plenty free."""

    def __init__(self, function_mib: int, base_mib: int) -> None:
        self.function_mib = function_mib
        self.base_mib = base_mib
        self.service: InferenceService | None = None

    def resident_bytes(self) -> int:
        assert self.service is not None
        cached = sum(model.size_bytes for _, model in self.service.cache.entries())
        return self.base_mib * MiB + cached

    def service_over(self, registry: ModelRegistry, **overrides: Any) -> InferenceService:
        given = settings(function_memory_bytes=self.function_mib * MiB, **overrides)
        readings = MachineReadings(resident_bytes=self.resident_bytes)
        self.service = InferenceService(registry, given, budget=LoadBudget(given, readings))
        return self.service


@pytest.fixture(autouse=True)
def own_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return use_own_temp_dir(monkeypatch, tmp_path)


def get_object_calls(s3: Any) -> list[str]:
    """Every S3 GetObject the client makes from now on, by key."""
    keys: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: keys.append(params["Key"])
    )
    return keys


# ---- how the weights are held


@pytest.mark.parametrize(
    ("weight_loading", "mapped_weights_bytes", "mapped"),
    [
        ("mapped", 1 << 40, True),  # the manifest says so, whatever the size
        ("prepacked", 0, False),
        (None, 1 * MiB, True),  # the rule: WEIGHTS_MIB at or above the threshold
        (None, 64 * MiB, False),
    ],
)
def test_weights_are_held_as_the_manifest_says_else_by_the_size_rule(
    registry: ModelRegistry,
    weight_loading: Literal["mapped", "prepacked"] | None,
    mapped_weights_bytes: int,
    mapped: bool,
) -> None:
    manifest = publish_chain(registry, weight_loading)
    service = InferenceService(registry, settings(mapped_weights_bytes=mapped_weights_bytes))

    infer(service, NAME, manifest.version)

    model = loaded(service, manifest)
    footprint = footprint_of(model.session)
    assert footprint is not None
    assert prepacking_disabled(model) is mapped
    assert footprint.weight_loading == ("mapped" if mapped else "prepacked")
    # Mapped, the session keeps its data file allocated after the folder is gone; prepacked, every MatMul
    # copied its weights and let the file go.
    assert footprint.scratch_bytes == (manifest.artifact(DATA_FILE).bytes if mapped else 0)
    assert private_folders(manifest) == []


def test_a_quantized_version_is_prepacked_whatever_its_size_and_refused_rather_than_mapped(
    registry: ModelRegistry,
) -> None:
    """Quantized kernels compute from their packed layout only: mapped, SmolLM2 int4 decoded 20x slower."""
    files, draft = matmul_chain_model(WEIGHTS_MIB)
    quantization = Quantization(
        scheme="int8-dynamic",
        per_channel=False,
        metric="mse",
        fp32_value=0.1,
        quantized_value=0.1,
        delta=0.0,
        max_degradation=0.01,
    )
    manifest = registry.publish(NAME, files, draft.model_copy(update={"quantization": quantization}))
    service = InferenceService(registry, settings(mapped_weights_bytes=0))

    infer(service, NAME, manifest.version)

    assert not prepacking_disabled(loaded(service, manifest))
    service.cache.discard(NAME, manifest.version)
    # Room for the weights mapped, not prepacked: refused, not served 20x slower.
    graph = sum(manifest.artifact(path).bytes for path in manifest.graph_files)
    function = 400 * MiB
    resident = function - int(function * MEMORY_MARGIN_SHARE) - int(graph * 1.05)
    given = settings(function_memory_bytes=function)
    tight = InferenceService(
        registry, given, budget=LoadBudget(given, MachineReadings(resident_bytes=lambda: resident))
    )
    with pytest.raises(ModelTooLarge, match="of memory for its weights, held prepacked, got"):
        infer(tight, NAME, manifest.version)


def test_a_model_that_prepacked_would_not_fit_is_mapped_rather_than_refused(registry: ModelRegistry) -> None:
    manifest = publish_chain(registry)
    graph = sum(manifest.artifact(path).bytes for path in manifest.graph_files)
    function = 400 * MiB
    # Room for the weights once (mapped), not for 1.1 times them (prepacked's peak).
    resident = function - int(function * MEMORY_MARGIN_SHARE) - int(graph * 1.05)
    given = settings(function_memory_bytes=function)
    budget = LoadBudget(given, MachineReadings(resident_bytes=lambda: resident))
    service = InferenceService(registry, given, budget=budget)

    infer(service, NAME, manifest.version)

    assert prepacking_disabled(loaded(service, manifest))


def test_size_bytes_counts_what_the_load_added_and_never_less_than_the_artifacts(
    registry: ModelRegistry,
) -> None:
    manifest = publish_chain(registry, "mapped")
    service = InferenceService(registry, settings())

    infer(service, NAME, manifest.version)

    model = loaded(service, manifest)
    footprint = footprint_of(model.session)
    assert footprint is not None
    # The warm-up touched every mapped weight page: they are this process's resident memory now.
    assert footprint.resident_bytes >= manifest.artifact(DATA_FILE).bytes * 0.9
    assert model.size_bytes == max(manifest.total_bytes, footprint.resident_bytes)


def test_an_evicted_mapped_model_gives_its_temp_space_back(registry: ModelRegistry) -> None:
    manifest = publish_chain(registry, "mapped")
    service = InferenceService(registry, settings())
    earlier = mapped_private_files(manifest)  # other tests' services, not yet collected, use v1 too
    infer(service, NAME, manifest.version)
    # The folder is gone, its data file still mapped: its blocks stay allocated while the session lives.
    assert private_folders(manifest) == []
    held = mapped_private_files(manifest) - earlier
    assert len(held) == 1

    service.cache.discard(NAME, manifest.version)

    assert mapped_private_files(manifest) & held == set()


# ---- temp space


def test_too_little_temp_space_is_refused_with_507_before_any_download(
    registry: ModelRegistry, s3: Any
) -> None:
    manifest = publish_chain(registry)
    service = InferenceService(registry, settings(ephemeral_storage_bytes=32 * MiB))
    fetched = get_object_calls(s3)

    with pytest.raises(InsufficientStorage) as refused:
        infer(service, NAME, manifest.version)

    needed = -(-(sum(manifest.artifact(p).bytes for p in manifest.graph_files) + DISK_HEADROOM_BYTES) // MiB)
    assert refused.value.status == 507
    assert refused.value.message.startswith(
        f"model '{NAME}' v{manifest.version}: expected {needed} MB of temp space for its graph files "
        f"({graph_mib_up(manifest)} MB) and 64 MB of headroom, got 32 MB available "
        "(MAAS_EPHEMERAL_STORAGE_MB=32 less 0 MB that cached models still hold there; "
    )
    assert refused.value.message.endswith(
        "raise the template parameter EphemeralStorageSize (up to 10240 MB)"
    )
    assert [key for key in fetched if not key.endswith("manifest.json")] == []
    assert private_folders(manifest) == []


def test_mapped_models_are_evicted_to_free_the_temp_space_they_hold(registry: ModelRegistry) -> None:
    first = publish_chain(registry, "mapped")
    second = publish_chain(registry, "mapped")
    graph = sum(first.artifact(path).bytes for path in first.graph_files)
    # Room for one model's files and the headroom, not for two.
    storage = graph + DISK_HEADROOM_BYTES + graph // 2
    service = InferenceService(registry, settings(ephemeral_storage_bytes=storage))
    earlier = mapped_private_files(first)

    infer(service, NAME, first.version)
    held = mapped_private_files(first) - earlier
    infer(service, NAME, second.version)

    assert service.cache.loaded_keys() == [(NAME, second.version)]
    assert mapped_private_files(first) & held == set()


def test_prepacked_models_hold_no_temp_space_and_are_not_evicted_for_it(registry: ModelRegistry) -> None:
    first = publish_chain(registry, "prepacked")
    second = publish_chain(registry, "prepacked")
    graph = sum(first.artifact(path).bytes for path in first.graph_files)
    service = InferenceService(
        registry, settings(ephemeral_storage_bytes=graph + DISK_HEADROOM_BYTES + graph // 2)
    )

    infer(service, NAME, first.version)
    infer(service, NAME, second.version)

    assert service.cache.loaded_keys() == [(NAME, first.version), (NAME, second.version)]


# ---- memory


def test_too_little_memory_is_refused_with_503_naming_the_numbers_and_the_parameter(
    registry: ModelRegistry, s3: Any
) -> None:
    manifest = publish_chain(registry)
    machine = Machine(function_mib=128, base_mib=120)
    service = machine.service_over(registry, memory_parameter="InferMemorySize")
    fetched = get_object_calls(s3)

    with pytest.raises(ModelTooLarge) as refused:
        infer(service, NAME, manifest.version)

    # Prepacked would not fit either, so the rule tried mapped: 1x the graph files.
    assert refused.value.status == 503
    assert refused.value.message == (
        f"model '{NAME}' v{manifest.version}: expected {graph_mib_up(manifest)} MB of memory for its "
        "weights, held mapped, got 0 MB available (AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 less 120 MB this "
        "process holds and a margin of 13 MB); raise the function's memory, template parameter "
        "InferMemorySize (up to 10240 MB)"
    )
    assert [key for key in fetched if not key.endswith("manifest.json")] == []


def test_cached_models_are_evicted_to_make_room_in_memory(registry: ModelRegistry) -> None:
    first = publish_chain(registry)
    second = publish_chain(registry)
    graph = sum(first.artifact(path).bytes for path in first.graph_files)
    function_mib = 200
    margin_mib = -(-int(function_mib * MiB * MEMORY_MARGIN_SHARE) // MiB)
    # Room for one prepacked chain (1.1x its files) and then some, never for two.
    base_mib = function_mib - margin_mib - -(-int(graph * 1.6) // MiB)
    machine = Machine(function_mib, base_mib)
    service = machine.service_over(registry)

    infer(service, NAME, first.version)
    infer(service, NAME, second.version)

    assert service.cache.loaded_keys() == [(NAME, second.version)]
    assert not prepacking_disabled(loaded(service, second))


def test_a_refusal_evicts_nothing_when_evicting_everything_would_not_be_enough(
    registry: ModelRegistry,
) -> None:
    small = publish_chain(registry)
    files, draft = matmul_chain_model(WEIGHTS_MIB * 8)
    large = registry.publish("large-chain", files, draft)
    graph = sum(small.artifact(path).bytes for path in small.graph_files)
    machine = Machine(200, 200 - 20 - -(-int(graph * 2) // MiB))
    service = machine.service_over(registry)
    infer(service, NAME, small.version)

    with pytest.raises(ModelTooLarge, match=r"model 'large-chain' v1: expected \d+ MB of memory"):
        service.infer(
            ModelRef("large-chain", version=large.version),
            InferenceRequest([Tensor("x", "FP32", np.zeros((1, CHAIN_WIDTH), np.float32))]),
        )

    assert service.cache.loaded_keys() == [(NAME, small.version)]


def test_the_memory_budget_reads_the_machine_when_lambda_sets_no_memory(registry: ModelRegistry) -> None:
    manifest = publish_chain(registry)
    service = InferenceService(
        registry,
        settings(),
        budget=LoadBudget(settings(), MachineReadings(machine_memory_bytes=lambda: 64 * MiB)),
    )

    with pytest.raises(ModelTooLarge, match=r"\(this machine's 64 MB less \d+ MB this process holds"):
        infer(service, NAME, manifest.version)


# ---- what a failed load leaves behind: nothing


def test_a_data_file_whose_bytes_do_not_match_the_manifest_is_refused_and_its_folder_removed(
    registry: ModelRegistry, s3: Any
) -> None:
    manifest = publish_chain(registry)
    flip_last_bit(s3, registry.version_prefix(NAME, manifest.version) + DATA_FILE)
    service = InferenceService(registry, settings())

    with pytest.raises(
        IntegrityError, match=rf"artifact '{DATA_FILE}' of model '{NAME}' v1: expected the sha256"
    ):
        infer(service, NAME, manifest.version)

    assert private_folders(manifest) == []
    assert service.cache.loaded_keys() == []


def test_a_download_that_fails_midway_leaves_no_folder(registry: ModelRegistry, s3: Any) -> None:
    manifest = publish_chain(registry)
    s3.delete_object(Bucket=TEST_BUCKET, Key=registry.version_prefix(NAME, manifest.version) + DATA_FILE)
    service = InferenceService(registry, settings())

    with pytest.raises(MaasError, match=DATA_FILE):
        infer(service, NAME, manifest.version)

    assert private_folders(manifest) == []


def publish_parted_chain(s3: Any, folder: Path) -> tuple[ModelRegistry, Manifest]:
    """A chain of 12 MiB published from files in S3's smallest parts (5 MiB): its data file has 3 parts."""
    registry = ModelRegistry(s3, TEST_BUCKET, part_bytes=MIN_PART_BYTES)
    files, draft = matmul_chain_model(12)
    paths: dict[str, bytes | Path] = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return registry, registry.publish(NAME, paths, draft)


def test_a_parted_data_file_is_fetched_by_ranges_into_the_session(s3: Any, tmp_path: Path) -> None:
    registry, manifest = publish_parted_chain(s3, tmp_path)
    parts = manifest.artifact(DATA_FILE).parts
    assert parts is not None and len(parts.sha256) == 3
    ranges: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject",
        lambda params, **_: ranges.append(params["Range"]) if "Range" in params else None,
    )

    infer(InferenceService(registry, settings()), NAME, manifest.version)

    assert len(ranges) == 3


def test_a_changed_part_is_refused_by_number_and_its_folder_removed(s3: Any, tmp_path: Path) -> None:
    registry, manifest = publish_parted_chain(s3, tmp_path)
    # A bit of the second part.
    flip_last_bit(s3, registry.version_prefix(NAME, manifest.version) + DATA_FILE, at=MIN_PART_BYTES + 7)

    with pytest.raises(IntegrityError, match=rf"artifact '{DATA_FILE}' of model '{NAME}' v1: part 2 of 3"):
        infer(InferenceService(registry, settings()), NAME, manifest.version)

    assert private_folders(manifest) == []


def test_refusals_name_megabytes_rounded_against_the_load(registry: ModelRegistry) -> None:
    """Needed is rounded up and available down: a refusal never reads "expected 5 MB, got 5 MB"."""
    manifest = publish_chain(registry)
    graph = sum(manifest.artifact(path).bytes for path in manifest.graph_files)
    service = InferenceService(registry, settings(ephemeral_storage_bytes=graph + DISK_HEADROOM_BYTES - 1))

    with pytest.raises(InsufficientStorage) as refused:
        infer(service, NAME, manifest.version)

    needed, available = map(int, re.findall(r"expected (\d+) MB .* got (\d+) MB", refused.value.message)[0])
    assert needed > available


def test_a_load_first_removes_what_a_killed_load_left_in_the_temp_dir(
    registry: ModelRegistry, own_temp_dir: Path
) -> None:
    manifest = publish_chain(registry)
    # As a process killed mid-download leaves it: the version's folder, half written, its lock free.
    abandoned = own_temp_dir / f"maas-{NAME}-v{manifest.version}-killed"
    abandoned.mkdir()
    (abandoned / LOCK_FILE).write_text("")
    (abandoned / DATA_FILE).write_bytes(b"\0" * MiB)
    service = InferenceService(registry, settings())

    infer(service, NAME, manifest.version)

    assert not abandoned.exists()
    assert private_folders(manifest) == []


def test_a_second_load_waits_for_the_first_to_open_its_session(registry: ModelRegistry) -> None:
    """Two loads checked against the same free space and memory would each pass and together not fit."""
    first, second = publish_chain(registry), publish_chain(registry, name="other-chain")
    service = InferenceService(registry, settings())
    first_admitted, first_may_finish = threading.Event(), threading.Event()
    order: list[str] = []

    def load(manifest: Manifest, label: str, hold: threading.Event | None) -> None:
        with service.budget.admitted(manifest, session_config(settings()), service.cache, _session_of):
            order.append(f"{label} admitted")
            if hold is not None:
                first_admitted.set()
                hold.wait(timeout=60)
            order.append(f"{label} loaded")

    loads = [
        threading.Thread(target=load, args=(first, "first", first_may_finish)),
        threading.Thread(target=load, args=(second, "second", None)),
    ]
    loads[0].start()
    assert first_admitted.wait(timeout=60)
    loads[1].start()
    # Without the lock the second load is admitted at once, while the first still holds its place.
    loads[1].join(timeout=1)
    first_may_finish.set()
    for thread in loads:
        thread.join(timeout=60)

    assert order == ["first admitted", "first loaded", "second admitted", "second loaded"]


def _session_of(model: LoadedModel) -> Any:
    return model.session
