"""``python -m voicestream`` is the ``voicestream`` command."""

from .cli import main

raise SystemExit(main())
