"""The ``dubbing`` job: a dub's source media to the same media in other languages.

Input ``{"dub_id", "languages"?, "segment_ids"?, "file_id"?}``. The dub (store/dubs.py) holds
everything else: its source and optional background/foreground files, its options, the
translations its caller supplied, and, once analysed, its plan. A run copies the files to a
scratch directory (containers such as MP4 need to seek; the pipeline reads paths), analyses
the source when the dub has no plan yet (and stores the plan at once, so a retry or a later
re-render does not analyse again), then renders each language (dubbing/pipeline.py) and saves
its media as this job's output, the same file however often the job runs.

``languages`` narrows a re-render to some of the dub's languages (all of them when omitted);
``segment_ids`` says which segments changed (informative: the speech cache makes unchanged
segments free, and the result counts what was synthesized and what was reused). ``file_id``
is the source, for the estimate only.

A failure the caller caused (4xx) marks the dub ``failed`` with its message at once; another
failure does so on the job's last attempt (a retry may still succeed). A job that ends
without running (a dead worker, a cancel) shows as failed through the dub's read
(store/dubs.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Final, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ...billing.prices import dubbing_credits
from ...dubbing.model import DubOptions, DubPlan
from ...dubbing.pipeline import analyse, render
from ...dubbing.translation import SuppliedLine
from ...dubbing.workspace_translators import translator_for_workspace
from ...errors import ServiceUnavailable, ValidationFailed, VoiceStreamError
from ...media.subtitles import Cue
from ...store.dubs import DubRecord, DubStore
from ..context import JobCancelled, JobContext, LeaseLost
from ..registry import InputFiles, JobOutcome
from ..speech import speech_cache
from .scratch import ProgressReporter, scratch_dir

__all__ = ["DubbingJob", "DubbingJobInput", "supplied_cues"]

# What a job reserves per language when the source's header does not say its duration.
ESTIMATE_SECONDS: Final = 600
_COPY_CHUNK: Final = 1024 * 1024
_ANALYSE_SHARE: Final = 40.0


class DubbingJobInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dub_id: UUID
    languages: list[str] | None = Field(default=None, min_length=1, max_length=32)
    segment_ids: list[str] | None = Field(default=None, max_length=10_000)
    file_id: UUID | None = None  # the dub's source: what the estimate prices


def supplied_cues(supplied: dict[str, Any]) -> dict[str, list[Cue]]:
    """The imported subtitles a dub keeps, as cues per language."""
    stored = supplied.get("subtitles") or {}
    return {
        language: [Cue(float(s), float(e), str(t)) for s, e, t in cues]
        for language, cues in stored.items()
    }


class DubbingJob:
    name = "dubbing"
    input_model: type[BaseModel] = DubbingJobInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        inp = cast(DubbingJobInput, job_input)
        seconds = await files.duration(inp.file_id) if inp.file_id is not None else None
        languages = len(inp.languages) if inp.languages else 1
        return dubbing_credits(ESTIMATE_SECONDS if seconds is None else seconds) * languages

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        inp = cast(DubbingJobInput, job_input)
        if ctx.pool is None:
            raise ServiceUnavailable("dubbing jobs need the database")
        dubs = DubStore(ctx.pool)
        dub = await dubs.get(ctx.workspace_id, inp.dub_id)
        try:
            return await self._run(ctx, dubs, dub, inp)
        except VoiceStreamError as exc:
            permanent = exc.http_status < 500 and exc.http_status not in (408, 429)
            if permanent or ctx.attempt >= ctx.settings.jobs_max_attempts:
                await dubs.fail(ctx.workspace_id, dub.id, ctx.job_id, exc.message)
            raise
        except (JobCancelled, LeaseLost):
            raise
        except Exception as exc:
            if ctx.attempt >= ctx.settings.jobs_max_attempts:
                await dubs.fail(ctx.workspace_id, dub.id, ctx.job_id, f"{type(exc).__name__}")
            raise

    async def _run(
        self, ctx: JobContext, dubs: DubStore, dub: DubRecord, inp: DubbingJobInput
    ) -> JobOutcome:
        options = DubOptions.model_validate(dub.options)
        languages = inp.languages or options.target_languages
        unknown = sorted(set(languages) - set(options.target_languages))
        if unknown:
            raise ValidationFailed(
                f"the dub has no target language {', '.join(unknown)}",
                details={"languages": unknown, "target_languages": options.target_languages},
            )
        if dub.source_file_id is None:
            raise ValidationFailed("the dub's source file was deleted")
        progress = ProgressReporter(ctx)
        await progress.report(0)
        root = scratch_dir(ctx.settings)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=root, prefix="dub-"))
        try:
            source = await _copy(ctx, dub.source_file_id, workdir / "source")
            background = foreground = None
            if dub.background_file_id is not None:
                background = await _copy(ctx, dub.background_file_id, workdir / "background")
            if dub.foreground_file_id is not None:
                foreground = await _copy(ctx, dub.foreground_file_id, workdir / "foreground")
            await progress.report(5)
            if dub.plan is None:
                lines = dub.supplied.get("lines")
                assert ctx.pool is not None  # run() refuses to start without it
                # The workspace's own translator, else the server's, else none; looked up
                # only when a target may be another language (a same-language dub must not
                # fail on an endpoint it would never call).
                translator = None
                if any(t != options.source_language for t in options.target_languages):
                    translator = await translator_for_workspace(
                        ctx.pool, ctx.settings, ctx.workspace_id
                    )
                plan = await analyse(
                    ctx,
                    source,
                    options,
                    supplied=[SuppliedLine.model_validate(x) for x in lines] if lines else None,
                    supplied_subtitles=supplied_cues(dub.supplied) or None,
                    translator=translator,
                    progress_span=(5.0, _ANALYSE_SHARE),
                )
                await dubs.set_plan(ctx.workspace_id, dub.id, plan.model_dump(mode="json"))
            else:
                plan = DubPlan.model_validate(dub.plan)
            await progress.report(_ANALYSE_SHARE)
            cache = speech_cache(ctx)
            outputs: dict[str, Any] = {}
            counts: dict[str, dict[str, int]] = {}
            share = (100.0 - _ANALYSE_SHARE - 5) / len(languages)
            for index, language in enumerate(languages):
                rendered = await render(
                    ctx,
                    source,
                    plan,
                    language,
                    options,
                    workdir=workdir,
                    progress_span=(
                        _ANALYSE_SHARE + share * index,
                        _ANALYSE_SHARE + share * (index + 1),
                    ),
                    cache=cache,
                    background=background,
                    foreground=foreground,
                    segment_ids=set(inp.segment_ids) if inp.segment_ids is not None else None,
                )
                saved = await ctx.files.save_output(
                    f"dub-{language}.{rendered.media_format}",
                    rendered.content_type,
                    _file_chunks(rendered.media),
                    format=rendered.media_format,
                    duration=rendered.duration,
                )
                outputs[language] = {
                    "file_id": saved["id"],
                    "format": rendered.media_format,
                    "content_type": rendered.content_type,
                    "duration": rendered.duration,
                    "bytes": saved["bytes"],
                    "srt": rendered.srt,
                    "vtt": rendered.vtt,
                }
                counts[language] = {"synthesized": rendered.synthesized, "reused": rendered.reused}
                await progress.report(_ANALYSE_SHARE + share * (index + 1))
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, workdir, True))
        await dubs.finish(ctx.workspace_id, dub.id, ctx.job_id, outputs)
        await progress.report(100)
        credits = dubbing_credits(plan.duration) * len(languages)
        result = {
            "dub_id": str(dub.id),
            "languages": languages,
            "files": [
                {"id": out["file_id"], "language": lang, "format": out["format"]}
                for lang, out in outputs.items()
            ],
            "segments": counts,
            "synthesized": sum(c["synthesized"] for c in counts.values()),
            "reused": sum(c["reused"] for c in counts.values()),
            "duration": plan.duration,
            "credits_used": credits,
        }
        return JobOutcome(result=result, credits_used=credits)


async def _copy(ctx: JobContext, file_id: UUID, path: Path) -> Path:
    """The stored file at ``path`` (off the loop, a chunk at a time)."""
    _, chunks = await ctx.files.open_input(file_id)
    out = await asyncio.to_thread(path.open, "wb")
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
    finally:
        await asyncio.to_thread(out.close)
    return path


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _COPY_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
