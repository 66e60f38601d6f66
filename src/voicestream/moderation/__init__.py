"""Content moderation of what the voices say: TTS input text, agent replies.

``terms`` matches block lists, ``remote`` asks an OpenAI-compatible moderation endpoint, and
``service.Moderator`` applies a workspace's policy and keeps its review queue.
"""
