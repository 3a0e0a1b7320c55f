"""Cheap stand-ins for the stdlib pieces that `clawgate get` cannot afford to import.

Every secret read starts a fresh interpreter, and a bare `python3 -I -S` start is the
floor it is measured against (bench/bench.py). On that scale `typing` costs ~10 ms, and
`configparser` and `json` each drag in `re`, `enum`, `functools` and `collections`
(~8 ms): each of them alone would cost more than everything else a `get` does. So:

  Record    a namedtuple whose fields are its class annotations, as typing.NamedTuple,
            built without typing or collections
  loads     json.loads through the C scanner json itself uses, without json or re
  dumps     json.dumps (default arguments) through json's C encoder
  read_ini  the INI that clawgate's config is written in, read as configparser reads it,
            stricter: whatever configparser would read otherwise is refused, not guessed

tests/test_lean.py pins each one against the stdlib original.
"""

try:  # the C accessor namedtuple uses: field access at C speed
    from _collections import _tuplegetter
except ImportError:  # pragma: no cover - not CPython
    def _tuplegetter(index, doc):
        return property(lambda self: self[index], doc=doc)

try:
    from _json import encode_basestring_ascii as _encode_ascii
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - not CPython
    _make_scanner = _make_encoder = None


# -- Record ------------------------------------------------------------------------------------

def _annotations(ns: dict) -> dict:
    """The class body's annotations: a dict up to Python 3.13, a function from 3.14 on (PEP 649/749)."""
    if "__annotations__" in ns:
        return ns["__annotations__"]
    for key in ("__annotate__", "__annotate_func__"):
        annotate = ns.get(key)
        if callable(annotate):
            return annotate(1)  # annotationlib.Format.VALUE: our fields are plain builtins
    return {}


class _RecordType(type):
    """Turns `class Grant(Record): name: str ...` into a namedtuple-like tuple subclass."""

    def __new__(mcls, name, bases, ns):
        if not any(isinstance(base, _RecordType) for base in bases):
            return super().__new__(mcls, name, bases, ns)  # Record itself
        fields = tuple(_annotations(ns))
        if not fields:
            raise TypeError(f"{name}: a Record needs annotated fields")
        defaults = {}
        for field in fields:
            if field.startswith("_"):
                raise TypeError(f"{name}: field names cannot start with an underscore: {field}")
            if field in ns:
                defaults[field] = ns.pop(field)
            elif defaults:
                raise TypeError(f"{name}: field {field} without a default follows a field with one")
        for index, field in enumerate(fields):
            ns[field] = _tuplegetter(index, f"Alias for field number {index}")
        ns.update(__slots__=(), _fields=fields, _field_defaults=defaults, __match_args__=fields)
        return super().__new__(mcls, name, bases, ns)


class Record(tuple, metaclass=_RecordType):
    """A tuple with named fields: equality, unpacking, _replace, _asdict, as a NamedTuple."""

    __slots__ = ()
    _fields: "tuple[str, ...]" = ()
    _field_defaults: "dict[str, object]" = {}

    def __new__(cls, *args, **kwargs):
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments but {len(args)} were given")
        values = list(args)
        for field in fields[len(args):]:
            if field in kwargs:
                values.append(kwargs.pop(field))
            elif field in cls._field_defaults:
                values.append(cls._field_defaults[field])
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: {field!r}")
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected or repeated arguments: {', '.join(sorted(kwargs))}")
        return tuple.__new__(cls, values)

    @classmethod
    def _make(cls, iterable):
        result = tuple.__new__(cls, iterable)
        if len(result) != len(cls._fields):
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
        return result

    def _replace(self, **changes):
        result = self._make([changes.pop(field, value) for field, value in zip(self._fields, self)])
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return result

    def _asdict(self) -> "dict[str, object]":
        return dict(zip(self._fields, self))

    def __getnewargs__(self):
        return tuple(self)

    def __repr__(self) -> str:
        inner = ", ".join(f"{field}={value!r}" for field, value in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"


# -- loads -------------------------------------------------------------------------------------

class _Decoder:
    """The attributes json's C scanner reads from a JSONDecoder, with json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _make_scanner(_Decoder()) if _make_scanner is not None else None
_SPACE = " \t\n\r"


def loads(data: "str | bytes") -> object:
    """json.loads(data) for UTF-8 text; malformed input raises json's own JSONDecodeError.

    Bytes must be UTF-8 without a BOM (what clawgate writes); json.loads would also
    guess UTF-16/32, and a record in those was not written by clawgate.
    """
    if _scan is None:  # pragma: no cover - not CPython
        import json

        return json.loads(data)
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if not isinstance(text, str):
        raise TypeError(f"the JSON object must be str or bytes, not {type(data).__name__}")
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
        if not text[end:].strip(_SPACE):
            return value
    except (StopIteration, SystemError):
        # Malformed. The C scanner raises its errors through json.decoder, which it expects
        # json to have imported already (otherwise: SystemError, "returned NULL without setting
        # an exception"), so json itself gives the verdict and the error, on this path only.
        pass
    import json

    return json.loads(text)


def dumps(value: object) -> str:
    """json.dumps(value) with its default arguments: ASCII only, `, ` and `: ` separators."""
    if _make_encoder is None:  # pragma: no cover - not CPython
        import json

        return json.dumps(value)
    if isinstance(value, str):
        return _encode_ascii(value)
    encode = _make_encoder({}, _not_serializable, _encode_ascii, None, ": ", ", ", False, False, True)
    return "".join(encode(value, 0))


def _not_serializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- read_ini ----------------------------------------------------------------------------------

def read_ini(text: str) -> "dict[str, dict[str, str]]":
    """{section: {key: value}} as configparser.ConfigParser(interpolation=None) reads it.

    Raises ValueError (with the line number) on anything configparser would refuse, and on
    what it would read in a way that a person editing the file might not expect: indented
    lines (continuations), a [DEFAULT] section, text after a section's `]`, a key with no
    `=` or `:`. Keys are lowercased and values stripped, as configparser does; a line whose
    first non-blank character is `#` or `;` is a comment; there are no inline comments.
    """
    sections: "dict[str, dict[str, str]]" = {}
    current = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0].isspace():
            raise ValueError(f"line {number}: indented (continuation lines are not supported)")
        if stripped[0] == "[":
            name = stripped[1:-1]
            if stripped[-1] != "]" or not name or "[" in name or "]" in name or name == "DEFAULT":
                raise ValueError(f"line {number}: not a section header")
            if name in sections:
                raise ValueError(f"line {number}: section [{name}] appears twice")
            current = sections[name] = {}
            continue
        cut = min((at for at in (line.find("="), line.find(":")) if at >= 0), default=-1)
        key = line[:cut].strip().lower()
        if cut < 0 or not key:
            raise ValueError(f"line {number}: not `key = value`")
        if current is None:
            raise ValueError(f"line {number}: a key before any [section]")
        if key in current:
            raise ValueError(f"line {number}: {key} appears twice in its section")
        current[key] = line[cut + 1:].strip()
    return sections
