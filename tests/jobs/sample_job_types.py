"""Job types for the jobs tests only: registered when imported (in the test process, or in a
``voicestream worker`` subprocess through ``VOICESTREAM_JOB_TYPE_MODULES``).

The real types (tts, transcription) are in ``voicestream.jobs.types``; these do nothing but
what a test needs to watch the queue: report progress, run for a while, fail on purpose.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from voicestream.errors import NotFound
from voicestream.jobs.context import JobContext
from voicestream.jobs.registry import InputFiles, JobOutcome, register

__all__ = ["ECHO", "FLAKY", "SLEEP"]

ECHO: Final = "test.echo"
SLEEP: Final = "test.sleep"
FLAKY: Final = "test.flaky"


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1000)
    steps: int = Field(0, ge=0, le=10)


class EchoJob:
    name = ECHO
    input_model = EchoInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        assert isinstance(job_input, EchoInput)
        return len(job_input.text)

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        assert isinstance(job_input, EchoInput)
        for step in range(job_input.steps):
            await ctx.progress(100 * (step + 1) / (job_input.steps + 1))
        return JobOutcome({"echo": job_input.text}, credits_used=len(job_input.text))


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(gt=0, le=120)
    tick: float = Field(0.05, gt=0, le=5)


class SleepJob:
    """Runs ``seconds``, reporting progress (a cancel checkpoint) every ``tick``; its result
    names the process that finished it."""

    name = SLEEP
    input_model = SleepInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 1

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        assert isinstance(job_input, SleepInput)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (elapsed := loop.time() - start) < job_input.seconds:
            await ctx.progress(100 * elapsed / job_input.seconds)
            await asyncio.sleep(job_input.tick)  # the work this job simulates
        return JobOutcome({"pid": os.getpid(), "attempt": ctx.attempt}, credits_used=1)


class FlakyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_times: int = Field(ge=0, le=100)  # the first attempts that fail
    permanent: bool = False  # fail with a caller's error (not worth retrying)


class FlakyJob:
    name = FLAKY
    input_model = FlakyInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 1

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        assert isinstance(job_input, FlakyInput)
        if job_input.permanent:
            raise NotFound("no file with id 00000000-0000-0000-0000-000000000000")
        if ctx.attempt <= job_input.fail_times:
            raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
        return JobOutcome({"attempt": ctx.attempt}, credits_used=1)


register(EchoJob())
register(SleepJob())
register(FlakyJob())
