"""`shopper load`: a shipped data set folder, or a file, posted to the API; stdout is one
JSON object. The folders here are tiny copies of the shipped data sets' shape."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shopper.cli import app
from shopper.codec import decode_event
from tests.unit.api_harness import MAX_BATCH, Api
from tests.unit.factories import iso  # the test server's (manual) clock's time

UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
UCI_DAYS = {
    "2010-12-01": [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,"
        "United Kingdom",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
        # A cancellation and a postage line: neither is a sale of a product.
        "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-01 09:41:00,2.55,14527.0,"
        "United Kingdom",
        "536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583.0,France",
    ],
    "2010-12-02": [
        # A guest: no CustomerID, so the invoice is the shopper.
        "536367,22633,HAND WARMER UNION JACK,6,2010-12-02 08:34:00,1.85,,United Kingdom",
        "536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,2,2010-12-02 08:34:00,2.55,,"
        "United Kingdom",
    ],
}

REES46_ROWS = [
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session",
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s-1",
    "2019-10-01 00:00:01 UTC,view,3900821,2053013552326770905,appliances.environment.water_heater,"
    "aqua,33.20,554748717,s-2",
    "2019-10-01 00:00:02 UTC,cart,3900821,2053013552326770905,appliances.environment.water_heater,"
    "aqua,33.20,554748717,s-2",
    "2019-10-01 00:00:03 UTC,purchase,3900821,2053013552326770905,"
    "appliances.environment.water_heater,aqua,33.20,554748717,s-2",
    "2019-10-01 00:00:04 UTC,view,17200506,2053013559792632471,furniture.living_room.sofa,,543.10,"
    "519107250,s-3",
    # The shipped file's last line was cut mid-row by its uploader.
    "2019-10-01 00:00:05 UTC,view,1307067,20530135",
]


def write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.fixture
def uci(tmp_path: Path) -> Path:
    folder = tmp_path / "uci-online-retail"
    for day, lines in UCI_DAYS.items():
        write_gz(folder / "by-day" / f"{day}.csv.gz", [UCI_HEADER, *lines])
    return folder


@pytest.fixture
def rees46(tmp_path: Path) -> Path:
    folder = tmp_path / "rees46-multicategory-2019oct-head"
    write_gz(folder / "2019-Oct.csv.gz", REES46_ROWS)
    return folder


def shopper_load(api: Api, *args: str | Path) -> Result:
    # Batches smaller than the data, so batching itself is tested.
    base = ["load", "--api", str(api.http.base_url), "--batch", "3"]
    base += ["--admin-token", api.system.keys.admin]
    return CliRunner().invoke(app, [*base, *map(str, args)])


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def applied_ids(api: Api) -> set[str]:
    """The event ids of the published events the processor applied (it records each
    event by its shopper and id, `Event.dedup_key`)."""
    events = [decode_event(r.value) for r in api.records()]
    applied = api.system.state.applied([e.dedup_key for e in events])
    return {e.event_id for e in events if e.dedup_key in applied}


def counts(sent: int) -> dict[str, Any]:
    return {"sent": sent, "accepted": sent, "rejected": 0, "rejections": []}


def test_a_uci_folder_loads_its_catalog_then_its_sales(api: Api, uci: Path) -> None:
    run = shopper_load(api, "--dataset", uci)

    assert run.exit_code == 0, run.output
    assert one_json_object(run.stdout) == {
        "dataset": "uci-online-retail",
        "items": counts(3),
        "events": counts(4),
    }
    assert "loading 4/4 events" in run.stderr
    api.process()
    assert {f"uci-{i}" for i in range(4)} <= applied_ids(api)
    stored = api.system.state.items(["85123A", "71053", "22633", "POST"])
    assert sorted(stored) == ["22633", "71053", "85123A"]
    assert (stored["71053"].title, stored["71053"].price) == ("WHITE METAL LANTERN", 3.39)


def test_max_events_takes_the_first_events_and_only_their_items(api: Api, uci: Path) -> None:
    run = shopper_load(api, "--dataset", uci, "--max-events", "2")

    assert run.exit_code == 0, run.output
    result = one_json_object(run.stdout)
    assert (result["items"]["sent"], result["events"]["sent"]) == (2, 2)
    api.process()
    assert sorted(api.system.state.items(["85123A", "71053", "22633"])) == ["71053", "85123A"]


def test_a_rees46_folder_loads_views_carts_and_purchases(api: Api, rees46: Path) -> None:
    run = shopper_load(api, "--dataset", rees46)

    assert run.exit_code == 0, run.output
    assert one_json_object(run.stdout) == {
        "dataset": "rees46-multicategory-2019oct-head",
        "items": counts(3),
        "events": counts(5),
    }
    api.process()
    assert len(applied_ids(api) & {f"rees-{i}" for i in range(6)}) == 5
    stored = api.system.state.items(["44600062", "3900821", "17200506"])
    assert stored["3900821"].category == ("appliances", "environment", "water_heater")
    assert stored["44600062"].brand == "shiseido"
    assert api.recommend(user_id="554748717")["source"] == "personalized"


def test_a_file_still_loads_with_its_progress_off_stdout(api: Api, tmp_path: Path) -> None:
    file = tmp_path / "events.jsonl"
    events = [
        {"event_id": f"e{n}", "type": "view", "ts": iso(), "item_id": "a"} | {"user_id": "me"}
        for n in range(MAX_BATCH + 1)
    ]
    file.write_text("".join(json.dumps(e) + "\n" for e in events))

    run = shopper_load(api, file)

    assert run.exit_code == 0, run.output
    assert one_json_object(run.stdout) == counts(MAX_BATCH + 1)
    assert "loading" in run.stderr


def test_rejected_records_are_counted_and_exit_1(api: Api, uci: Path) -> None:
    too_long = "X" * 129  # over the API's id limit: its item and its sale are rejected
    bad = uci / "by-day" / "2010-12-03.csv.gz"
    write_gz(bad, [UCI_HEADER, f"536400,{too_long},LONG,1,2010-12-03 09:00:00,1.85,,France"])

    run = shopper_load(api, "--dataset", uci)

    assert run.exit_code == 1, run.output
    result = one_json_object(run.stdout)
    items, events = result["items"], result["events"]
    assert (items["sent"], items["accepted"], items["rejected"]) == (4, 3, 1)
    assert (events["sent"], events["accepted"], events["rejected"]) == (5, 4, 1)
    assert events["rejections"][0]["record"] == 4
    assert events["rejections"][0]["event_id"] == "uci-4"


@pytest.mark.parametrize(
    "args",
    [[], ["events.jsonl", "--dataset", "folder"], ["--dataset", "folder", "--items"]],
    ids=["neither", "both", "items-with-dataset"],
)
def test_the_source_must_be_a_file_or_a_data_set(api: Api, args: list[str]) -> None:
    run = shopper_load(api, *args)
    assert run.exit_code == 2
    assert run.stdout == ""
    assert "FILE" in run.stderr


def test_a_folder_that_is_no_data_set_is_an_error(api: Api, tmp_path: Path) -> None:
    run = shopper_load(api, "--dataset", tmp_path)
    assert run.exit_code == 2
    assert run.stdout == ""
    assert "neither uci-online-retail" in run.stderr
