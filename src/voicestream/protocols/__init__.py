"""Pure wire codecs: ``parse(message) -> event`` and ``serialize(event) -> str | bytes``.

Nothing here imports asyncio, aiohttp, websockets or aiortc (a test checks it); transports move
the bytes, these modules give them meaning.
"""
