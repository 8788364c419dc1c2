"""``Secret``: a value that never shows itself.

``repr``, ``str``, ``format`` and f-strings give ``Secret('****')``; pickling and copying refuse
(a pickle is a file on disk or bytes on a wire); ``==`` compares in constant time; the value sits
in a slot, so ``vars()`` and ``__dict__`` have nothing to show. ``.reveal()`` is the one way out.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

_MASK = "Secret('****')"


class Secret:
    """A secret text (a password, a DSN holding one). Only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: "str | Secret") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            # The type only: the value may be the secret itself.
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret value. Hand it straight to what needs it; never print or log it."""
        return self._value

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        if equal is NotImplemented:
            return NotImplemented
        return not equal

    # A hash would be a fingerprint of the value: secrets are not dict keys.
    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("a Secret cannot be copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("a Secret cannot be copied")


def as_secret(value: "str | Secret", field: str = "password") -> Secret:
    """``value`` as a :class:`Secret`; a wrong type is an :class:`InvalidInput` naming ``field``."""
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    from ._errors import InvalidInput

    raise InvalidInput("must be a str or a Secret", field=field)
