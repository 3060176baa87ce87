"""Private load folders: locked while their load runs, removed when it ends, and swept once their process is
gone however it went (a Lambda timeout kills a cold start mid-download and keeps /tmp)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from maas.runtime.load_folders import LOCK_FILE, private_load_folder, remove_abandoned_load_folders

# A child that opens a load folder, writes into it, says where it is, then either dies without cleaning up
# (SIGKILL, as a timeout or an out-of-memory kill would) or waits holding it until its stdin closes.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from maas.runtime.load_folders import private_load_folder
    with private_load_folder("maas-big-v1-") as folder:
        (folder / "model.onnx.data").write_bytes(b"0" * 4096)
        print(folder, flush=True)
        if sys.argv[1] == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()
    """
)


def child(mode: str, temp_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(temp_dir), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_folder_is_locked_while_its_load_runs_and_gone_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with private_load_folder("maas-m-v3-") as folder:
        assert folder.parent == tmp_path.resolve()
        assert folder.name.startswith("maas-m-v3-")
        assert (folder / LOCK_FILE).is_file()
        # Held by this process: a sweep (another thread of it included) leaves it.
        assert remove_abandoned_load_folders(str(folder.parent)) == []
        assert folder.is_dir()
    assert not folder.exists()


def test_a_folder_whose_process_was_killed_is_removed_by_the_next_sweep(tmp_path: Path) -> None:
    process = child("killed", tmp_path)
    assert process.stdout is not None
    folder = Path(process.stdout.readline().strip())
    process.wait(timeout=60)

    assert folder.is_dir() and (folder / "model.onnx.data").is_file()
    assert remove_abandoned_load_folders(str(tmp_path)) == [folder]
    assert not folder.exists()


def test_a_folder_whose_process_still_runs_is_left_alone(tmp_path: Path) -> None:
    process = child("waiting", tmp_path)
    assert process.stdin is not None and process.stdout is not None
    folder = Path(process.stdout.readline().strip())
    try:
        assert remove_abandoned_load_folders(str(tmp_path)) == []
        assert (folder / "model.onnx.data").is_file()
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert not folder.exists()


@pytest.mark.parametrize("kind", ["no lock file", "not ours", "a file", "a link"])
def test_what_is_not_an_abandoned_load_folder_is_never_removed(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "maas-m-v1-abc"
    if kind == "no lock file":  # being created, or left by a version before locks
        target.mkdir()
    elif kind == "not ours":
        target = tmp_path / "other-folder"
        target.mkdir()
        (target / LOCK_FILE).write_text("")
    elif kind == "a file":
        target.write_text("keep")
    else:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / LOCK_FILE).write_text("")
        target.symlink_to(elsewhere)

    assert remove_abandoned_load_folders(str(tmp_path)) == []
    assert target.exists()


def test_a_prefix_outside_the_swept_name_is_refused() -> None:
    with pytest.raises(ValueError, match="expected it to start with 'maas-'"), private_load_folder("x-"):
        pass
