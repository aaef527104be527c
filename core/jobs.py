"""What a task message carries: one frozen record per job kind, built and read here only.

A startup run sends one `SeriesJob` per series into its timeframe's queue; a bucket close
and a run's top-up send `RefreshJob`s into the timeframe's live queue. Both carry the
run's public options (`JobOptions`) and nothing secret: keys stay in the worker's
environment. `from_message` is the one reader: a message no dispatcher would build is
refused with `InvalidInput` naming the bad field.

The canvas helpers return Celery's own serialized form of a signature, chord or group
(plain dicts), so both planes enqueue the very same messages without the core importing
Celery: `app.signature(jobs.run_chord(run_id, jobs)).apply_async()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from core import defaults, keys
from core.errors import InvalidInput
from core.exchanges import validate_symbol
from core.series import Series


@dataclass(frozen=True)
class JobOptions:
    """The run's options every job of it carries."""

    candle_count: int = defaults.CANDLE_COUNT
    min_candles: int = defaults.MIN_CANDLES
    user_id: int = defaults.USER_ID
    exchange_id: int = defaults.EXCHANGE_ID
    exchange: str = "coinbase"  # which client, budget and breaker (core/exchanges.py)


@dataclass(frozen=True)
class SeriesJob:
    """One series of a startup run."""

    TASK: ClassVar[str] = keys.SERIES_TASK
    run_id: str
    symbol: str
    timeframe: str
    options: JobOptions = JobOptions()
    full: bool = False  # ignore what the cache holds
    live: bool = False  # the run's first timeframe: may take the budget's reserve

    @property
    def queue(self) -> str:
        return keys.queue(self.timeframe)

    def to_message(self) -> dict[str, Any]:
        return _flatten(self)

    @classmethod
    def from_message(cls, raw: object) -> SeriesJob:
        return _read(cls, raw)


@dataclass(frozen=True)
class RefreshJob:
    """One series' tail after a bucket close (`boundary_ms`, claimed once per series), or
    a run's top-up before its gate (`run_id`). Always live work.

    At a close where longer timeframes close too, the finest timeframe's refresh carries
    them in `derive` (in order: each may be built from the ones before it), and the
    derived ones to check against the exchange in `audit`; `check` marks such a check
    itself (one native request compared with the cache, in the audit queue, never live).
    """

    TASK: ClassVar[str] = keys.REFRESH_TASK
    symbol: str
    timeframe: str
    options: JobOptions = JobOptions()
    boundary_ms: int | None = None
    run_id: str | None = None
    derive: tuple[str, ...] = ()
    audit: tuple[str, ...] = ()
    check: bool = False
    live: ClassVar[bool] = True

    @property
    def queue(self) -> str:
        return keys.AUDIT_QUEUE if self.check else keys.live_queue(self.timeframe)

    def to_message(self) -> dict[str, Any]:
        return _flatten(self)

    @classmethod
    def from_message(cls, raw: object) -> RefreshJob:
        return _read(cls, raw)


Job = SeriesJob | RefreshJob


def series_of(job: Job) -> Series:
    """The job's series (validated: a bad exchange, symbol or timeframe raises
    `InvalidInput`)."""
    validate_symbol(job.symbol, job.options.exchange)
    return Series.of(job.symbol, job.timeframe)


# --- the canvas: Celery's serialized signatures, as plain data ------------------------------


def signature(job: Job, **options: Any) -> dict[str, Any]:
    """One job's message: its task, its queue, the job as the only argument."""
    return _sig(job.TASK, [job.to_message()], queue=job.queue, immutable=True, **options)


def run_chord(run_id: str, jobs: list[Job], topup: int = 0) -> dict[str, Any]:
    """The jobs as one chord whose callback (`finish`) opens the run's gate, and whose
    error callback (`abort`) opens it as failed. No jobs: the callback alone."""
    abort = _sig(keys.ABORT_TASK, [run_id], queue=keys.CONTROL_QUEUE)
    finish = _sig(
        keys.FINISH_TASK, [run_id], {"topup": topup}, queue=keys.CONTROL_QUEUE, link_error=[abort]
    )
    if not jobs:
        finish["args"] = [[], run_id]
        return finish
    header = [signature(j) for j in jobs]
    return {
        "task": "celery.chord",
        "subtask_type": "chord",
        "args": [],
        "kwargs": {"header": header, "body": finish},
        "options": {},
        "immutable": False,
    }


def refresh_group(jobs: list[RefreshJob], expires_s: float) -> dict[str, Any]:
    """A bucket close's refreshes; one not started within `expires_s` is dropped (the
    next close fetches its tail anyway)."""
    return {
        "task": "celery.group",
        "subtask_type": "group",
        "args": [],
        "kwargs": {"tasks": [signature(j, expires=expires_s) for j in jobs]},
        "options": {},
        "immutable": False,
    }


def _sig(
    task: str, args: list, kwargs: dict | None = None, *, immutable: bool = False, **options: Any
) -> dict[str, Any]:
    return {
        "task": task,
        "args": args,
        "kwargs": kwargs or {},
        "options": options,
        "subtask_type": None,
        "immutable": immutable,
    }


# --- messages ------------------------------------------------------------------------------

_OPTION_FIELDS = tuple(f.name for f in fields(JobOptions))
_OPTION_TYPES = {f.name: str(f.type) for f in fields(JobOptions)}


def _flatten(job: Job) -> dict[str, Any]:
    out = {f.name: getattr(job, f.name) for f in fields(job) if f.name != "options"}
    out.update(asdict(job.options))
    return out


def _read(cls: type, raw: object) -> Any:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{cls.__name__} message must be an object, got {type(raw).__name__}")
    own = {f.name: f for f in fields(cls) if f.name != "options"}
    unknown = sorted(set(raw) - set(own) - set(_OPTION_FIELDS))
    if unknown:
        raise InvalidInput(f"{cls.__name__} message has unknown fields {unknown}")
    values = {}
    for name, f in own.items():
        if name in raw:
            values[name] = _check(cls.__name__, name, raw[name], str(f.type))
    opts = {
        name: _check(cls.__name__, name, raw[name], _OPTION_TYPES[name])
        for name in _OPTION_FIELDS
        if name in raw
    }
    job = cls(options=JobOptions(**opts), **values)
    series_of(job)  # symbol and timeframe are valid, or InvalidInput names them
    if isinstance(job, RefreshJob):
        _check_derive(job)
    return job


def _check_derive(job: RefreshJob) -> None:
    """Derived timeframes: known, longer than the job's, each a multiple of it, in order,
    once each; audited ones among them; a check carries neither and names its close."""
    from core.timeframe import timeframe

    kind, base = "RefreshJob", series_of(job).timeframe
    derived = [timeframe(name) for name in job.derive]  # InvalidInput names a bad one
    if any(tf.seconds <= base.seconds or tf.seconds % base.seconds for tf in derived):
        raise InvalidInput(f"{kind} message field 'derive' {list(job.derive)!r}: not "
                           f"multiples of {base.name}")  # fmt: skip
    if [tf.seconds for tf in derived] != sorted({tf.seconds for tf in derived}):
        raise InvalidInput(f"{kind} message field 'derive' {list(job.derive)!r}: not in order")
    if not set(job.audit) <= set(job.derive) or len(set(job.audit)) != len(job.audit):
        raise InvalidInput(f"{kind} message field 'audit' {list(job.audit)!r}: not derived")
    if job.derive and job.boundary_ms is None:
        raise InvalidInput(f"{kind} message: 'derive' needs a bucket close ('boundary_ms')")
    if job.check and (job.derive or job.boundary_ms is None):
        raise InvalidInput(f"{kind} message: a check names its close and derives nothing")


def _check(kind: str, name: str, value: object, typ: str) -> object:
    ok = {
        "str": isinstance(value, str),
        "str | None": value is None or isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "int | None": value is None or (isinstance(value, int) and not isinstance(value, bool)),
        "bool": isinstance(value, bool),
        "tuple[str, ...]": isinstance(value, list | tuple)
        and all(isinstance(v, str) for v in value),
    }.get(typ)
    if not ok:
        raise InvalidInput(f"{kind} message field {name!r} has a bad value {value!r} ({typ})")
    return tuple(value) if typ == "tuple[str, ...]" else value
