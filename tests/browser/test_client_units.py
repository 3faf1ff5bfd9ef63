"""The dashboard's state and live-client modules, run in headless Chromium against a fake socket: the
protocol duties of docs/live-protocol.md (offsets, gaps, recovery, reset, ping, back-off) one by one.
The scenarios live in tests/browser/js/; the assertions stay here."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page


async def unit(page: Page, name: str) -> Any:
    """Runs the default export of tests/browser/js/<name>.js in the page and returns what it returns."""
    return await page.evaluate("async (url) => (await import(url)).default()", f"/tests/{name}.js")


async def test_live_client_keeps_offsets_fills_gaps_and_recovers(module_page: Page) -> None:
    result = await unit(module_page, "client_recovery")
    assert result["connect"] == {"type": "connect", "token": "T1"}
    assert result["subscribe"] == {"type": "subscribe", "channel": "inventory"}
    assert result["gapFrames"] == [
        {"type": "unsubscribe", "channel": "inventory"},
        {"type": "subscribe", "channel": "inventory", "recover": {"epoch": "E1", "offset": 6}},
    ]
    assert result["pubs"] == [6, 7, 8, 9, 10], "every publication exactly once, in order"
    assert result["pong"] == {"type": "pong"}
    resume = {"type": "subscribe", "channel": "inventory", "recover": {"epoch": "E1", "offset": 9}}
    assert result["resume"] == resume
    assert result["afterRecovery"] == "recovered"
    assert result["afterReload"] == "reloaded"
    assert result["snapshots"] == [1, 2, 0]
    assert result["afterReset"] == [
        {"type": "unsubscribe", "channel": "inventory"},
        {"type": "subscribe", "channel": "inventory", "recover": {"epoch": "E2", "offset": 3}},
    ], "after a reset the client resubscribes from its position; the relay decides"
    assert result["afterResetStatus"] == "reloaded"
    assert result["afterEpoch"][-1] == {
        "type": "subscribe",
        "channel": "inventory",
        "recover": {"epoch": "E3", "offset": 1},
    }
    assert result["retried"] == result["afterEpoch"][-1], "an unavailable subscribe is retried"
    statuses = result["statuses"]
    assert statuses[:2] == ["connecting", "live"]
    assert statuses[2:4] == ["reconnecting", "recovered"]
    assert statuses[-1] == "offline"


async def test_filtered_channel_offsets_token_refresh_and_expired_token(module_page: Page) -> None:
    result = await unit(module_page, "client_filtered")
    assert result["subscribe"] == {"type": "subscribe", "channel": "alerts", "filter": {"skus": ["A"]}}
    assert result["pubs"] == [3, 7, 20], "filtered offsets only increase: no resubscribe, no replays"
    assert result["sent"] == 3
    assert result["refresh"] == {"type": "refresh", "token": "T2"}
    assert result["auth"] == ["token expired"]
    assert result["statuses"][-1] == "offline"
    assert result["sockets"] == 1, "a refused token is not retried"
    assert (result["pendingTimers"], result["stopped"]) == (0, True)


async def test_backoff_has_jitter_and_a_cap(module_page: Page) -> None:
    delays = await unit(module_page, "backoff")
    for attempt, (low, high) in enumerate(delays):
        ceiling = min(8000, 250 * 2**attempt)
        assert low == ceiling / 2
        assert ceiling / 2 < high < ceiling
    assert delays[-1][1] < 8000


async def test_state_applies_only_newer_versions(module_page: Page) -> None:
    result = await unit(module_page, "state_versions")
    assert result["old"] is None
    assert result["afterOld"] == 10
    assert result["fresh"] == {"sku": "A"}
    assert result["afterFresh"] == [12, 10, 6]
    assert result["unknown"] == {"sku": "NEW", "missing": True}
    assert result["oldPrice"] is None
    assert result["otherCurrency"] is None
    assert result["newPrice"] == {"sku": "A"}
    assert result["price"] == ["11.90", "12.5"]
    assert result["stale"] == "ok", "an alert older than the snapshot row does not change the badge"
    assert result["alerted"] == "low"
    assert result["dup"] is None
    assert result["feed"] == ["a2", "a1"]
    assert result["keptPrice"] == "11.90"
    assert result["snapPrice"] == ["EUR", "12.90", 5]
    assert result["rows"] == ["A"]


async def test_state_view_filters_and_sorts(module_page: Page) -> None:
    result = await unit(module_page, "state_view")
    assert result["all"] == ["LAMP", "MUG-1", "MUG-2"]
    assert result["text"] == ["MUG-1", "MUG-2"]
    assert result["name"] == ["LAMP"]
    assert result["alerts"] == ["LAMP", "MUG-2"]
    assert result["low"] == ["MUG-2"]
    assert result["byAvailableDesc"] == ["MUG-1", "MUG-2", "LAMP"]
    assert result["byPrice"] == ["LAMP", "MUG-1", "MUG-2"], "no price sorts first, prices as numbers"


async def test_coalescing_channel_asks_for_it_and_takes_skipped_offsets(module_page: Page) -> None:
    result = await unit(module_page, "client_coalescing")
    assert result["subscribe"] == {"type": "subscribe", "channel": "inventory", "coalesce_ms": 250}
    assert result["pubs"] == [3, 9, 15], "coalesced offsets only increase: no resubscribe, no replays"
    assert result["sent"] == 2, "connect and subscribe only"


async def test_state_keeps_stock_per_location(module_page: Page) -> None:
    result = await unit(module_page, "state_locations")
    assert result["first"] == result["second"] == {"sku": "A"}, "both events of one transfer land"
    assert result["afterTransfer"] == [["WH", 4, 5], ["default", 6, 5]], "code point order, as the API's"
    assert result["replayed"] is None
    assert result["stale"] is None
    assert result["afterStale"] == result["afterTransfer"]
    assert result["totals"] == [10, 5]
    assert result["summary"] == "WH 4 · default 6"
    assert result["summaryWH"] == "WH 4"
    assert result["summaryNone"] == "—"
    assert result["old"] == {"sku": "A"}
    assert result["afterOld"] == [11, result["afterTransfer"]]
    assert result["afterLocationAlert"] == ["ok", "low"], "a location's alert is not the item's"
    assert result["afterItemAlert"] == ["out", "low"]
    assert result["feed"] == ["available 1 (min 2)", "available 1 (min 2) at WH"]
    assert result["levels"] == [3, None, True]
    assert result["followLevels"] == [1, 3], "only locations without levels of their own follow the item"
    assert result["registeredResult"] == {"sku": "C", "unplaced": True}, "item_registered names no location"
    assert result["unplaced"] == []
    assert result["placed"] is True
    assert result["registered"] == [["STORE", 7, 1]]
    assert result["placedAgain"] is False
    assert result["atWH"] == ["A", "B"]
    assert result["atDefault"] == ["A", "B"]
    assert result["atStore"] == ["C"]
