"""Prometheus metrics: what users feel (first audio, finals), and what the process suffers
(event-loop lag, engine speed, queues).

Each app gets its own ``CollectorRegistry`` so several apps in one process (tests) never clash.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
)
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.time_to_first_audio = Histogram(
            "voicestream_tts_time_to_first_audio_seconds",
            "From the first synthesizable text to the first audio byte handed to the transport.",
            ["transport"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stt_final_latency = Histogram(
            "voicestream_stt_final_latency_seconds",
            "Decoder time to produce a final transcript once the utterance has ended.",
            ["transport"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.conversation_stage = Histogram(
            "voicestream_conversation_stage_seconds",
            "Where a conversation's voice-to-voice time goes, per answered user turn: "
            "final_wait (the VAD has closed the turn; the final transcript is awaited), agent "
            "(final transcript to the agent's first text), speech (first text to first audio).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "voicestream_active_streams", "Open streaming sessions.", ["kind"], registry=r
        )
        self.audio_seconds = Counter(
            "voicestream_audio_seconds",
            "Seconds of audio synthesized or transcribed.",
            ["direction"],
            registry=r,
        )
        self.engine_rtf = Histogram(
            "voicestream_engine_real_time_factor",
            "Engine compute time divided by the audio duration it produced or consumed.",
            ["engine"],
            buckets=_RTF_BUCKETS,
            registry=r,
        )
        self.engine_queue_seconds = Histogram(
            "voicestream_engine_queue_seconds",
            "Time a job waited for an engine thread.",
            ["engine"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "voicestream_event_loop_lag_seconds",
            "How late the event loop ran a callback scheduled to run now.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.requests = Counter(
            "voicestream_http_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "voicestream_client_errors",
            "Requests or streams ended by a client error, by code.",
            ["code"],
            registry=r,
        )
