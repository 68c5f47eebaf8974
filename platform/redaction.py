"""Keep credentials out of everything the platform logs or prints.

Two kinds of secret reach a config: values of keys that name a credential
(``tracking.token``, ``db.password``) and credentials inside URLs
(``http://user:pass@host``, ``s3://b/k?X-Amz-Signature=...``). Keys are judged by their
words, not by substrings: ``ldm.cond.max_text_tokens`` is a number, ``hf_token`` is a
secret. The same rules serve MLflow params, the ``config.yaml`` artifact, the sweep's
``trial.N`` override params and printed URIs.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

REDACTED = "***"

# A key is secret when one of its words (split at ".", "_", "-" and camelCase) is one of
# these, or two consecutive words form one of the pairs.
_SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "secret", "token", "credential",
                           "credentials", "apikey"})
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("session", "key")})
# Query parameters use shorter names for the same things (presigned URLs, SAS tokens).
_QUERY_SECRET_WORDS = _SECRET_WORDS | {"key", "sig", "signature", "code"}

_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# scheme://USERINFO@ : userinfo cannot hold "/", "?", "#" or "@" (RFC 3986 §3.2.1).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s]+@")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[^=&#;\s]+)=)(?P<value>[^&#;\s]*)")
_OVERRIDE = re.compile(r"^(?P<key>[~+]{0,2}[\w.\-/@]+)=(?P<value>.*)$", re.S)


def _words(key: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(key)]


def _names_a_secret(words: list[str], singles: frozenset[str]) -> bool:
    return any(w in singles for w in words) or any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def is_secret_key(key: str) -> bool:
    """Whether a (dotted) config key holds a credential, judged on whole words of its segments."""
    return _names_a_secret(_words(key), _SECRET_WORDS)


def redact_text(text: str) -> str:
    """``text`` with URL userinfo and secret query values (``?token=...``) replaced."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)

    def query(match: re.Match[str]) -> str:
        if _names_a_secret(_words(match["name"]), _QUERY_SECRET_WORDS) and match["value"]:
            return match["lead"] + REDACTED
        return match[0]

    return _QUERY_PARAM.sub(query, text)


def redact_value(key: str, value: Any) -> Any:
    """A leaf value as it may be shown: hidden under a secret key, URL secrets removed otherwise.

    Unset secrets (None, "") stay visible: that a token is *not* set is useful to see.
    """
    if is_secret_key(key) and value not in (None, ""):
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value


def redact(tree: Any, path: str = "") -> Any:
    """A copy of a nested config (dicts, lists, scalars) with every secret removed."""
    if isinstance(tree, Mapping):
        return {k: redact(v, f"{path}.{k}" if path else str(k)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact(v, path) for v in tree]
    return redact_value(path, tree)


def redact_override(override: str) -> str:
    """A Hydra override (``key=value``, ``+key=value``) as it may be shown."""
    match = _OVERRIDE.match(override)
    if match is None:
        return redact_text(override)
    value = redact_value(match["key"].lstrip("~+"), match["value"])
    return f"{match['key']}={value}"
