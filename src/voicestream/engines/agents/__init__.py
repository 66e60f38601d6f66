"""Agents: what answers the user in a conversation (knowledge base, or any chat-completions LLM)."""
