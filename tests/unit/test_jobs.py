"""The job contract: what a message carries, read back exactly, junk refused by name."""

from __future__ import annotations

import json

import pytest
from celery import Celery

from core import jobs, keys
from core.config import BackfillConfig
from core.errors import InvalidInput
from core.jobs import JobOptions, RefreshJob, SeriesJob


def test_series_job_round_trips_through_json():
    job = SeriesJob("r1", "BTC-USD", "5m", JobOptions(300, 60, 2, 3), full=True, live=True)
    assert SeriesJob.from_message(json.loads(json.dumps(job.to_message()))) == job
    assert job.queue == keys.queue("5m")


def test_refresh_job_is_live_and_goes_to_the_live_queue():
    job = RefreshJob("ETH-USD", "1h", boundary_ms=3_600_000)
    assert RefreshJob.from_message(job.to_message()) == job
    assert job.live and job.queue == keys.live_queue("1h")


def test_messages_carry_nothing_but_the_contract():
    job = SeriesJob("r1", "BTC-USD", "5m", BackfillConfig().job_options())
    assert set(job.to_message()) == {
        "run_id", "symbol", "timeframe", "full", "live",
        "candle_count", "min_candles", "user_id", "exchange_id", "exchange",
    }  # fmt: skip


@pytest.mark.parametrize(
    "change,named",
    [
        ({"symbol": "bad id"}, "bad id"),
        ({"timeframe": "7m"}, "7m"),
        ({"candle_count": "100"}, "candle_count"),
        ({"user_id": True}, "user_id"),
        ({"live": 1}, "live"),
        ({"secret": "x"}, "secret"),
    ],
)
def test_a_bad_field_is_refused_by_name(change, named):
    raw = {**SeriesJob("r1", "BTC-USD", "5m").to_message(), **change}
    with pytest.raises(InvalidInput, match=named):
        SeriesJob.from_message(raw)


def test_not_an_object_is_refused():
    with pytest.raises(InvalidInput, match="object"):
        RefreshJob.from_message(["BTC-USD", "5m"])


def test_the_chord_is_celerys_own_canvas():
    app = Celery("t", broker="memory://", set_as_current=False)
    run_jobs = [SeriesJob("r1", "BTC-USD", "5m", live=True), SeriesJob("r1", "ETH-USD", "1h")]
    sig = app.signature(jobs.run_chord("r1", run_jobs))
    assert [t.options["queue"] for t in sig.tasks] == ["backfill.5m", "backfill.1h"]
    assert [t.task for t in sig.tasks] == [keys.SERIES_TASK] * 2
    assert list(sig.tasks[0].args) == [run_jobs[0].to_message()] and sig.tasks[0].immutable
    body = sig.body
    assert body.task == keys.FINISH_TASK and body.options["queue"] == keys.CONTROL_QUEUE
    assert body.options["link_error"][0]["task"] == keys.ABORT_TASK


def test_no_jobs_is_the_callback_alone():
    app = Celery("t", broker="memory://", set_as_current=False)
    sig = app.signature(jobs.run_chord("r1", [], topup=2))
    assert sig.task == keys.FINISH_TASK and list(sig.args) == [[], "r1"]
    assert sig.kwargs == {"topup": 2}


def test_a_refresh_group_expires():
    app = Celery("t", broker="memory://", set_as_current=False)
    g = app.signature(jobs.refresh_group([RefreshJob("BTC-USD", "5m", boundary_ms=0)], 42.0))
    (task,) = g.tasks
    assert task.options == {"queue": "backfill.live.5m", "expires": 42.0}
