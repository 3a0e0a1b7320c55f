"""Record: a read-only value with named fields, in plain Python.

Not typing.NamedTuple or collections.namedtuple: every secret read starts a fresh
interpreter, and importing typing or collections would cost more than the rest of a
`get` (bench/bench.py). A subclass lists its fields in __slots__, in order, and
annotates them for the type checker:

    class Grant(Record):
        __slots__ = ("name", "tier")
        name: str
        tier: str
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import TypeVar

    R = TypeVar("R", bound="Record")


class Record:
    __slots__: "tuple[str, ...]" = ()

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self.__slots__
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments but {len(args)} were given")
        for field, value in zip(fields, args):
            object.__setattr__(self, field, value)
        for field in fields[len(args):]:
            if field not in kwargs:
                raise TypeError(f"{type(self).__name__}() missing required argument: {field!r}")
            object.__setattr__(self, field, kwargs.pop(field))
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected or repeated arguments: {', '.join(sorted(kwargs))}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> "tuple[object, ...]":
        return tuple(getattr(self, field) for field in self.__slots__)

    def _asdict(self) -> "dict[str, object]":
        return dict(zip(self.__slots__, self._values()))

    def _replace(self: "R", **changes: object) -> "R":
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise ValueError(f"Got unexpected field names: {sorted(unknown)!r}")
        return type(self)(**{**self._asdict(), **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{field}={value!r}" for field, value in self._asdict().items())
        return f"{type(self).__name__}({inner})"
