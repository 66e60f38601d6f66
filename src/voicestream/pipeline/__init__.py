"""The conversational session core: frames, processors, turn-taking, barge-in (later issues)."""
