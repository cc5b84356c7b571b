"""``vault.load_env``: python-dotenv's ``load_dotenv``, with ``cbk://`` references resolved from the vault.

A ``.env`` file can then be committed, because it holds where each credential lives rather
than the credential::

    OPENAI_API_KEY=cbk://@openai
    DATABASE_PASSWORD=cbk://@db/password
    LOG_LEVEL=debug

The file is parsed by python-dotenv itself (the ``dotenv`` extra), not by a third parser
of ours, so quoting, comments, ``export`` and ``${VAR}`` interpolation behave exactly as
in ``load_dotenv``. References are resolved after interpolation, so a secret value is never
itself interpolated.
"""

from __future__ import annotations

import os
from typing import Final

from ._accesslog import surface
from ._refs import is_ref, ref_resolver, resolve_refs
from ._unattended import PathArg, open_unattended
from .errors import InvalidRequestError, MissingDependencyError

__all__ = ["dotenv_file_values", "load_env"]

_DISABLE_ENV: Final = "PYTHON_DOTENV_DISABLED"


def _disabled() -> bool:
    # python-dotenv's own switch: a deployment that turned .env loading off means ours too.
    return os.environ.get(_DISABLE_ENV, "").casefold() in {"1", "true", "t", "yes", "y"}


def _check_environ(values: dict[str, str]) -> None:
    """Refuse, before anything is set, what ``os.environ`` would reject halfway through."""
    for key, value in values.items():
        if not key or "=" in key or "\0" in key:
            raise InvalidRequestError(f"{key[:80]!r} cannot be an environment variable name")
        if "\0" in value:
            raise InvalidRequestError(f"{key[:80]}: the value holds a NUL byte, which no environment can carry")


def dotenv_file_values(dotenv_path: str | os.PathLike[str], *, override: bool) -> dict[str, str | None]:
    """The variables of a ``.env`` file as ``load_dotenv(override=...)`` would set them (references unresolved).

    python-dotenv parses the file; ``${VAR}`` is interpolated as ``load_dotenv`` does it,
    so with ``override=False`` the environment wins inside ``${...}`` too. A name written
    without ``=`` has the value None. Needs the ``dotenv`` extra
    (:class:`~vault.MissingDependencyError`). ``cbk-vault run --env-file`` uses it too.
    """
    try:
        from dotenv import dotenv_values
        from dotenv.main import resolve_variables
    except ImportError:
        raise MissingDependencyError(
            ".env files are parsed with python-dotenv: pip install 'cbk-vault[dotenv]'"
        ) from None
    # Interpolated as load_dotenv(override=...) does it: with override=False the environment
    # wins inside ${...} too (dotenv_values alone always lets the file win).
    raw = dotenv_values(dotenv_path, interpolate=False, encoding="utf-8")
    return dict(resolve_variables(raw.items(), override=override))


def load_env(
    dotenv_path: str | os.PathLike[str] = ".env", *, override: bool = False, path: PathArg = None
) -> dict[str, str]:
    """Load a ``.env`` file into ``os.environ``, resolving ``cbk://`` references from the vault.

    Like python-dotenv's ``load_dotenv``: variables already set are kept unless
    ``override=True``; a missing file sets nothing; ``${VAR}`` interpolation and
    ``PYTHON_DOTENV_DISABLED`` work as there. Returns the variables it set (name -> value,
    secret values included), where ``load_dotenv`` returns a bool.

    Only references that will be set are resolved, and the vault is opened only if there is
    one. The vault is ``path``, else ``$CBK_VAULT_PATH``, else the default one, opened
    without ever prompting, in this order: through the unlock agent (``cbk-vault unlock``)
    if it holds the vault; else with ``$CBK_VAULT_PASSPHRASE`` if set; else
    :class:`~vault.NotUnlockedError`. Every reference is resolved before any variable is
    set, so a failure leaves ``os.environ`` untouched; errors name the variable, never a
    value. Needs ``pip install 'cbk-vault[dotenv]'`` (:class:`~vault.MissingDependencyError`).
    """
    try:
        import dotenv  # noqa: F401 - the dependency check comes first, as before
    except ImportError:
        raise MissingDependencyError(
            "vault.load_env parses .env files with python-dotenv: pip install 'cbk-vault[dotenv]'"
        ) from None
    if _disabled():
        return {}
    if override not in (True, False):
        raise InvalidRequestError("override must be a bool")
    values = dotenv_file_values(dotenv_path, override=override)
    wanted: dict[str, str] = {
        key: value for key, value in values.items() if value is not None and (override or key not in os.environ)
    }
    if any(is_ref(value) for value in wanted.values()):
        with open_unattended(path) as v, surface("load-env"):
            resolved: dict[str, str] = resolve_refs(wanted, ref_resolver(v))
    else:
        resolved = wanted
    _check_environ(resolved)
    os.environ.update(resolved)
    return resolved
