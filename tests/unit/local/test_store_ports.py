"""The port the local store listens on: chosen, remembered in the data folder, or the one after the API's."""

from __future__ import annotations

import socket
from pathlib import Path

from maas.local.ports import choose_store_port, remember_store_port


def test_a_chosen_port_wins_over_the_remembered_one(tmp_path: Path) -> None:
    remember_store_port(tmp_path, 4101)

    assert choose_store_port(tmp_path, requested=4200, gateway_port=3000) == 4200


def test_the_remembered_port_is_kept_across_restarts_whatever_the_api_port(tmp_path: Path) -> None:
    remember_store_port(tmp_path, 3001)

    assert choose_store_port(tmp_path, requested=None, gateway_port=3000) == 3001
    assert choose_store_port(tmp_path, requested=None, gateway_port=8080) == 3001


def test_an_api_moved_onto_the_remembered_port_leaves_the_store_the_next_one(tmp_path: Path) -> None:
    remember_store_port(tmp_path, 3001)

    assert choose_store_port(tmp_path, requested=None, gateway_port=3001) == 3002


def test_with_nothing_remembered_the_store_takes_the_port_after_the_api_or_any(tmp_path: Path) -> None:
    assert choose_store_port(tmp_path, requested=None, gateway_port=3000) == 3001
    assert choose_store_port(tmp_path, requested=None, gateway_port=0) == 0
    assert choose_store_port(None, requested=None, gateway_port=3000) == 3001


def test_a_held_next_port_gives_any_free_one_unless_the_port_was_asked_for_or_remembered(
    tmp_path: Path,
) -> None:
    # Given something else holding the port after the gateway's, and no store port remembered
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]

        # Then the store takes any free port, rather than refusing to start over a port nobody asked for
        assert choose_store_port(tmp_path, requested=None, gateway_port=held - 1) == 0
        # But a port asked for is kept, and refused later in one line if it is taken
        assert choose_store_port(tmp_path, requested=held, gateway_port=held - 1) == held
