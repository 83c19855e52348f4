"""Fixtures: the fake service and Acme's agent talking to it (see fake_service.py)."""

import httpx
import pytest
from countersign import AsyncCountersign, Countersign
from fake_service import API_KEY, BASE_URL, FakeCountersign


@pytest.fixture
def service() -> FakeCountersign:
    return FakeCountersign()


@pytest.fixture
def client(service: FakeCountersign) -> Countersign:
    """Acme's agent. Retries do not sleep: the delays are recorded instead."""
    agent = Countersign(BASE_URL, API_KEY, transport=httpx.MockTransport(service.handle))
    agent.slept = []  # type: ignore[attr-defined]
    agent._sleep = agent.slept.append  # type: ignore[attr-defined]
    return agent


@pytest.fixture
def async_client(service: FakeCountersign) -> AsyncCountersign:
    agent = AsyncCountersign(BASE_URL, API_KEY, transport=httpx.MockTransport(service.handle))
    agent.slept = []  # type: ignore[attr-defined]

    async def record(seconds: float) -> None:
        agent.slept.append(seconds)  # type: ignore[attr-defined]

    agent._sleep = record  # type: ignore[method-assign]
    return agent
