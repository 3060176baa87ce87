"""The synthetic MatMul chain: what it writes is valid ONNX with its weights in one aligned data file, the
same for the same seed, and onnxruntime computes what the weights say; `maas synthesize` writes it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.external_data_helper import ExternalDataInfo

from maas.cli import main
from maas.errors import InvalidInput
from maas.registry.manifest import MODEL_FILE
from maas.training.matmul_chain import ALIGNMENT, DATA_FILE, MatmulChain, build_matmul_chain

WIDTH = 48
LAYER_BYTES = WIDTH * WIDTH * 4


def weights_of(chain: MatmulChain) -> list[np.ndarray]:
    """Each layer's weights, read back from the data file at the offsets the graph gives."""
    proto = onnx.load(str(chain.model_path), load_external_data=False)
    data = chain.data_path.read_bytes()
    weights = []
    for tensor in proto.graph.initializer:
        info = ExternalDataInfo(tensor)
        layer = np.frombuffer(data, dtype=np.float32, count=WIDTH * WIDTH, offset=int(info.offset or 0))
        weights.append(layer.reshape(WIDTH, WIDTH))
    return weights


def test_the_chain_has_as_many_layers_as_the_target_takes_each_at_an_aligned_offset(tmp_path: Path) -> None:
    chain = build_matmul_chain(tmp_path, target_bytes=2 * LAYER_BYTES + 1, width=WIDTH, seed=3)

    assert (chain.layers, chain.weight_bytes) == (3, 3 * LAYER_BYTES)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILE, DATA_FILE]
    onnx.checker.check_model(str(chain.model_path))
    proto = onnx.load(str(chain.model_path), load_external_data=False)
    infos = [ExternalDataInfo(tensor) for tensor in proto.graph.initializer]
    assert {info.location for info in infos} == {DATA_FILE}
    offsets = [int(info.offset or 0) for info in infos]
    assert [offset % ALIGNMENT for offset in offsets] == [0, 0, 0]
    assert [info.length for info in infos] == [LAYER_BYTES] * 3
    assert chain.data_path.stat().st_size == offsets[-1] + LAYER_BYTES


def test_onnxruntime_computes_the_product_of_the_weights_and_keeps_the_scale(tmp_path: Path) -> None:
    chain = build_matmul_chain(tmp_path, target_bytes=6 * LAYER_BYTES, width=WIDTH, seed=1)
    x = chain.sample_input(rows=2, seed=5)

    session = ort.InferenceSession(str(chain.model_path), providers=["CPUExecutionProvider"])
    (served,) = session.run(None, {"input": x})

    expected = x.astype(np.float64)
    for layer in weights_of(chain):
        expected = expected @ layer.astype(np.float64)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
    # Variance 1/width per weight keeps each row's norm within a small factor after six layers.
    ratio = np.linalg.norm(served, axis=1) / np.linalg.norm(x, axis=1)
    assert np.all((ratio > 0.2) & (ratio < 5))


def test_the_same_seed_writes_the_same_files_and_another_seed_other_weights(tmp_path: Path) -> None:
    first = build_matmul_chain(tmp_path / "a", target_bytes=LAYER_BYTES, width=WIDTH, seed=7)
    again = build_matmul_chain(tmp_path / "b", target_bytes=LAYER_BYTES, width=WIDTH, seed=7)
    other = build_matmul_chain(tmp_path / "c", target_bytes=LAYER_BYTES, width=WIDTH, seed=8)

    assert first.data_path.read_bytes() == again.data_path.read_bytes()
    assert first.model_path.read_bytes() != other.model_path.read_bytes()  # the seed is in its doc string
    assert first.data_path.read_bytes() != other.data_path.read_bytes()
    bound = np.sqrt(3 / WIDTH)
    assert np.all(np.abs(weights_of(first)[0]) <= bound)


@pytest.mark.parametrize(
    ("options", "field"), [({"width": 0}, "width"), ({"target_bytes": 0}, "target_bytes")]
)
def test_a_size_that_is_not_positive_is_refused_naming_it(
    tmp_path: Path, options: dict[str, int], field: str
) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: expected an integer >= 1"):
        build_matmul_chain(tmp_path, **options)

    assert list(tmp_path.iterdir()) == []


def test_maas_synthesize_writes_the_chain_and_says_how_to_publish_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "big"

    code = main(["synthesize", str(out), "--gb", str(3 * LAYER_BYTES / 1e9), "--width", str(WIDTH)])

    printed = capsys.readouterr().out
    assert code == 0
    assert f"3 MatMuls of {WIDTH}x{WIDTH} fp32" in printed
    assert f"maas publish {out / MODEL_FILE} --name NAME" in printed
    assert (out / DATA_FILE).stat().st_size == 2 * ALIGNMENT + LAYER_BYTES  # two layers padded, then the last


def test_building_the_chain_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys; from pathlib import Path; from maas.training.matmul_chain import build_matmul_chain; "
        f"build_matmul_chain(Path({str(tmp_path)!r}), target_bytes=1, width=8); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
