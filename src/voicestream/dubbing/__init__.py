"""Dubbing: a recording's speech transcribed, translated and re-voiced in other languages,
timed to the source and mixed back under its video (issue 11). ``pipeline.analyse`` makes a
``DubPlan``; ``pipeline.render`` turns a plan into one language's media and subtitles."""
