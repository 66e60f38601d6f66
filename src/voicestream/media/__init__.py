"""Pure audio: frames, PCM and G.711, codecs through PyAV, resampling, framing, subtitles.

Nothing here imports asyncio, aiohttp, aiortc or database code (a test checks it).
"""
