"""How a session's options come out of its configuration: threads, and intra-op spinning off by default."""

from __future__ import annotations

from maas.runtime import SessionConfig, usable_cpus
from maas.runtime.session_options import INTRA_OP_SPINNING, SMALL_GRAPH_BYTES

CPU = ("CPUExecutionProvider",)


def test_spinning_is_off_by_default_and_on_when_asked_for() -> None:
    assert SessionConfig(providers=CPU).session_options().get_session_config_entry(INTRA_OP_SPINNING) == "0"
    spinning = SessionConfig(providers=CPU, spinning=True).session_options()

    assert spinning.get_session_config_entry(INTRA_OP_SPINNING) == "1"


def test_a_config_entry_naming_spinning_wins_over_the_field() -> None:
    config = SessionConfig(providers=CPU, spinning=True, config_entries=((INTRA_OP_SPINNING, "0"),))

    assert config.session_options().get_session_config_entry(INTRA_OP_SPINNING) == "0"


def test_threads_are_the_configs_else_one_per_usable_cpu() -> None:
    assert SessionConfig(providers=CPU, intra_op_threads=3).session_options().intra_op_num_threads == 3
    assert SessionConfig(providers=CPU).session_options().intra_op_num_threads == usable_cpus()


def test_a_small_graph_runs_one_thread_and_a_large_one_keeps_the_configs() -> None:
    config = SessionConfig(providers=CPU, intra_op_threads=4)

    assert config.for_graph(SMALL_GRAPH_BYTES - 1).session_options().intra_op_num_threads == 1
    assert config.for_graph(SMALL_GRAPH_BYTES) == config
