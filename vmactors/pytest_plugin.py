"""pytest plugin (entry point `pytest11`): the `vm` fixture for protocol tests.

    def test_munmap_waits_for_readers(vm):
        s = vm.scenario({"name": "t", "map": [{"name": "A", "fill": 1}],
                         "thread": [["r0 = load A"], ["munmap A"]]})
        r = vm.run(s, policy="mmap_sem", seed=3)
        assert r.outcome == "ok"

The fixture is a `vmactors.testing.VM`; see that module (and docs/testing.md) for
the API. When a test that used it fails, the report gets a "vmactors" section with
every run the test made and the choice list that replays it.

This module is imported by every pytest run in an environment where vmactors is
installed, so it imports nothing heavy until a test asks for the fixture.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Generator

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from .testing import VM

_VM_KEY = pytest.StashKey["VM"]()


@pytest.fixture
def vm(request: pytest.FixtureRequest) -> "VM":
    """Build scenarios inline, run them under a policy (seeded or by choice list),
    step them by hand, query their logs, explore them exhaustively."""
    from .testing import VM

    machine = VM(path=f"<{request.node.name}>.toml", base=request.config.rootpath)
    request.node.stash[_VM_KEY] = machine
    return machine


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An `async def` test that uses `vm` runs under Trio with no marker and no
    configuration: pytest-trio, when installed, gets its `trio` marker (so async
    fixtures work too); otherwise `pytest_pyfunc_call` below runs it."""
    if not config.pluginmanager.has_plugin("trio"):
        return
    for item in items:
        if _async_vm_test(item) and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


def _async_vm_test(item: pytest.Item) -> bool:
    return (isinstance(item, pytest.Function) and "vm" in item.fixturenames
            and inspect.iscoroutinefunction(item.obj))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.config.pluginmanager.has_plugin("trio") or not _async_vm_test(pyfuncitem):
        return None
    import trio

    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    trio.run(functools.partial(pyfuncitem.obj, **args))
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    machine = item.stash.get(_VM_KEY, None)
    if machine is not None and report.failed and machine.runs:
        report.sections.append(("vmactors runs", machine.report()))
    return report
