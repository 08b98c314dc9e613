"""Errors cross the boundary as Python exceptions with the CLI's messages; a closed agent refuses work."""

from __future__ import annotations

from pathlib import Path

import pytest

import tributary
from conftest import FAST


async def test_a_blank_question_is_a_value_error(agent: tributary.Agent) -> None:
    with pytest.raises(tributary.QuestionError, match="^question: the question is empty$") as raised:
        await agent.ask("   ")
    assert isinstance(raised.value, ValueError)


async def test_an_unknown_fault_source_names_the_sources(agent: tributary.Agent) -> None:
    with pytest.raises(tributary.ConfigError) as raised:
        await agent.ask("Weather in Paris?", faults={"nope": "hang"})
    assert str(raised.value) == 'faults: no source is called "nope"; the sources are weather, news, kb'


async def test_an_unknown_fault_kind_is_refused(agent: tributary.Agent) -> None:
    with pytest.raises(tributary.ConfigError, match=r"^faults\.news: "):
        await agent.ask("Weather in Paris?", faults={"news": "explode"})


def test_a_bad_sources_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[[source]]\nname = "news"\nkind = "newz"\nbase_url = "http://127.0.0.1:1"\n')
    with pytest.raises(tributary.ConfigError) as raised:
        tributary.Agent(path)
    message = str(raised.value)
    assert "sources.toml" in message and ":3:" in message and "newz" in message


def test_a_missing_sources_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(tributary.ConfigError, match="missing.toml"):
        tributary.Agent(tmp_path / "missing.toml")


def test_an_unknown_source_field_is_refused() -> None:
    with pytest.raises(tributary.ConfigError, match="colour"):
        tributary.Agent([tributary.Source("news", "news", "http://127.0.0.1:1", other={"colour": "red"})])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deadline": 0}, "deadline: must be more than 0"),
        ({"deadline": float("nan")}, "deadline: must be more than 0"),
        ({"workers": 0}, "workers: must be at least 1"),
        ({"executor": "fibers"}, "executor: parse executor kind: `fibers` is not one of"),
        ({"executor": "processes"}, "executor: `processes` runs the tributary binary"),
        ({"inference_cost": "lots"}, "inference_cost: "),
    ],
)
def test_bad_agent_arguments(options: dict, message: str) -> None:
    with pytest.raises(tributary.ConfigError, match="^" + message.replace("(", r"\(")):
        tributary.Agent(**options)


async def test_a_closed_agent_refuses_work() -> None:
    agent = tributary.Agent(**FAST)
    await agent.aclose()
    assert agent.closed
    with pytest.raises(tributary.TributaryError, match="the agent is closed"):
        await agent.ask("Weather in Paris?")
    agent.close()  # idempotent
