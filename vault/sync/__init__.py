"""Sync between a local vault and the ChatBotKit cloud (the optional extra ``cbk-vault[sync]``).

::

    import vault
    from vault.sync import ChatBotKitRemote, sync

    with vault.open("agent.cbkv", passphrase) as v, ChatBotKitRemote() as remote:
        report = sync(v, remote)            # push and pull; conflicts are reported, not forced
        print(report.created_remote, report.pulled, report.conflicts)

``import vault`` never needs httpx; importing ``vault.sync`` does. The design (what is
stored where, the marker, the conflict policy, what is sent) is in docs/SYNC.md.
"""

from __future__ import annotations

# The Remote* errors live in vault.errors (one tree); they are re-exported here for convenience.
from ..errors import (
    RemoteAuthError,
    RemoteError,
    RemoteForbiddenError,
    RemoteNotFoundError,
    RemoteProtocolError,
    RemoteUnavailableError,
)
from ._client import ChatBotKitRemote
from ._plan import Action, Conflict, Plan, plan
from ._run import Change, Remote, SyncIssue, SyncReport, sync

__all__ = [
    "Action",
    "ChatBotKitRemote",
    "Change",
    "Conflict",
    "Plan",
    "Remote",
    "RemoteAuthError",
    "RemoteError",
    "RemoteForbiddenError",
    "RemoteNotFoundError",
    "RemoteProtocolError",
    "RemoteUnavailableError",
    "SyncIssue",
    "SyncReport",
    "plan",
    "sync",
]
