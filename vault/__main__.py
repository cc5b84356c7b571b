"""``python -m vault``: the same as the ``cbk-vault`` command."""

from .cli import main

raise SystemExit(main())
