"""Studio projects: the timeline a project holds, what changed between two versions of it,
and the edits the API applies to it. Pure: no I/O, no database."""
