"""FileRunStore: where ApprovalRunner keeps paused OpenAI Agents runs."""

import pytest

pytest.importorskip("agents")  # the openai-agents extra

from countersign.openai_agents import FileRunStore


def test_a_saved_record_is_loaded_back_and_replaced_by_the_next_save(tmp_path):
    store = FileRunStore(tmp_path / "runs")
    assert store.load("ticket-1042") is None

    store.save("ticket-1042", '{"done": false}')
    store.save("ticket-1042", '{"done": true}')

    assert store.load("ticket-1042") == '{"done": true}'
    assert len(list((tmp_path / "runs").iterdir())) == 1  # no temporary file left behind


def test_a_run_id_is_never_a_path(tmp_path):
    store = FileRunStore(tmp_path / "runs")

    store.save("../../outside", "{}")

    assert not (tmp_path / "outside").exists()
    assert [p.parent for p in (tmp_path / "runs").iterdir()] == [tmp_path / "runs"]
    assert store.load("../../outside") == "{}"
