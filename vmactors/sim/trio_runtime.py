"""The Trio shell: every actor is a Trio task; the scheduler task owns every choice.

Each actor task only receives a step from its inbox, calls the pure step function,
and sends the result back — the protocol logic stays in the pure handlers. Trio
itself randomises task order, so nothing here is left to Trio: the scheduler task
picks the step, hands it to exactly one actor task and waits for its answer before
choosing again, so only one actor step runs at a time and the log is the same as the
direct driver's for the same choices (a test checks this).
"""

from __future__ import annotations

from typing import IO

import trio

from ..scenario.model import Scenario
from .run import DEFAULT_MAX_STEPS, Run, RunResult
from .strategies import Strategy
from .system import Step, StepResult, apply


async def _actor_task(
    run: Run,
    inbox: trio.MemoryReceiveChannel[Step],
    outbox: trio.MemorySendChannel[StepResult],
) -> None:
    async for step in inbox:
        # The actor's step: a pure function of the system and the delivered message.
        await outbox.send(apply(run.system, step, run.program, run.policy))


async def run_trio(
    scenario: Scenario,
    policy: str,
    strategy: Strategy,
    seed: int = 0,
    log: IO[bytes] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> RunResult:
    """Run one scenario with one Trio task per actor; same result and log as `Run.run`."""
    run = Run(scenario, policy, strategy, seed, log, max_steps)
    results_send, results_recv = trio.open_memory_channel[StepResult](0)
    inboxes: dict[str, trio.MemorySendChannel[Step]] = {}
    async with trio.open_nursery() as nursery:
        for name in run.system.actor_names():
            send, recv = trio.open_memory_channel[Step](0)
            inboxes[name] = send
            nursery.start_soon(_actor_task, run, recv, results_send.clone(), name=name)
        results_send.close()
        while True:
            steps = run.enabled()
            if not steps:
                run.ended = "done"
                break
            if run.system.step >= max_steps:
                run.ended = "step-limit"
                break
            index = strategy.choose(steps, run.system.step + 1)
            step = steps[index]
            await inboxes[step.actor].send(step)
            result = await results_recv.receive()
            run.commit(index, step, result)
        for send in inboxes.values():
            await send.aclose()
    return run.finish()
