"""I/O shells: HTTP streaming and WebSocket handlers that move bytes between clients and the
streaming core. Protocol meaning lives in ``protocols``; inference in ``engines``.
"""
