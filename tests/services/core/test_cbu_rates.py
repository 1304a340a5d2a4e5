"""The Central Bank of Uzbekistan feed in its real format (all values strings, Rate per Nominal
units, Date dd.mm.yyyy) through httpx.MockTransport; failures keep yesterday's rate."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import httpx
from sqlmodel import select

from noventiq_panel.models import ExchangeRate
from noventiq_panel.services.core import cbu_rates, rates

FEED = [
    {"id": 69, "Code": "840", "Ccy": "USD", "CcyNm_RU": "Доллар США", "CcyNm_UZ": "AQSH dollari",
     "CcyNm_UZC": "АҚШ доллари", "CcyNm_EN": "US Dollar", "Nominal": "1", "Rate": "12171.03", "Diff": "-86.1",
     "Date": "24.11.2026"},
    {"id": 21, "Code": "978", "Ccy": "EUR", "CcyNm_RU": "Евро", "CcyNm_UZ": "EVRO", "CcyNm_UZC": "ЕВРО",
     "CcyNm_EN": "Euro", "Nominal": "1", "Rate": "14210.55", "Diff": "12.4", "Date": "24.11.2026"},
    {"id": 57, "Code": "643", "Ccy": "RUB", "CcyNm_RU": "Российский рубль", "CcyNm_UZ": "Rossiya rubli",
     "CcyNm_UZC": "Россия рубли", "CcyNm_EN": "Russian Ruble", "Nominal": "1", "Rate": "151.07", "Diff": "-0.5",
     "Date": "24.11.2026"},
    {"id": 41, "Code": "364", "Ccy": "IRR", "CcyNm_RU": "Иранский риал", "CcyNm_UZ": "Eron riali",
     "CcyNm_UZC": "Эрон риали", "CcyNm_EN": "Iranian Rial", "Nominal": "10", "Rate": "2.89", "Diff": "0",
     "Date": "24.11.2026"},
    {"id": 72, "Code": "704", "Ccy": "VND", "CcyNm_RU": "Вьетнамский донг", "CcyNm_UZ": "Vyetnam dongi",
     "CcyNm_UZC": "Вьетнам донги", "CcyNm_EN": "Vietnamese Dong", "Nominal": "100", "Rate": "46.27",
     "Diff": "0.1", "Date": "24.11.2026"},
]


def transport(payload=FEED, status=200, seen=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        if isinstance(payload, Exception):
            raise payload
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload, ensure_ascii=False)
        return httpx.Response(status, content=body.encode() if isinstance(body, str) else body,
                              headers={"content-type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_feed_is_stored_per_unit_for_every_currency(session):
    seen = []
    result = cbu_rates.fetch_rates(session, client=transport(seen=seen))
    assert result.ok and result.rate_date == date(2026, 11, 24)
    assert seen == ["https://cbu.uz/ru/arkhiv-kursov-valyut/json/"]
    assert rates.unit_rate(session, "USD", date(2026, 11, 24)) == Decimal("12171.03")
    assert rates.unit_rate(session, "EUR", date(2026, 11, 24)) == Decimal("14210.55")
    assert rates.unit_rate(session, "RUB", date(2026, 11, 24)) == Decimal("151.07")
    assert rates.unit_rate(session, "IRR", date(2026, 11, 24)) == Decimal("0.289")  # 2.89 for 10 rials
    assert rates.unit_rate(session, "VND", date(2026, 11, 24)) == Decimal("0.4627")  # 46.27 for 100 dong
    assert {r.source for r in session.exec(select(ExchangeRate)).all()} == {"cbu"}
    assert "USD 12171.03" in str(result)


def test_a_day_is_asked_for_with_its_url_and_a_refetch_replaces_not_duplicates(session):
    seen = []
    cbu_rates.fetch_rates(session, date(2026, 11, 24), client=transport(seen=seen))
    changed = [dict(FEED[0], Rate="12180.00")]
    cbu_rates.fetch_rates(session, date(2026, 11, 24), client=transport(changed, seen=seen))
    assert seen == ["https://cbu.uz/ru/arkhiv-kursov-valyut/json/all/2026-11-24/"] * 2
    usd = session.exec(select(ExchangeRate).where(ExchangeRate.currency == "USD")).all()
    assert len(usd) == 1 and usd[0].rate == Decimal("12180.00")


def test_failures_store_nothing_and_yesterdays_rate_stays_in_use(session):
    rates.store_rate(session, "USD", date(2026, 11, 23), Decimal("12100.00"), source="cbu")
    session.commit()
    for client in (transport(status=503, payload="Service Unavailable"),
                   transport(payload=httpx.ConnectError("no route to host")),
                   transport(payload="<html>maintenance</html>"),
                   transport(payload={"error": "not a list"}),
                   transport(payload=[{"Ccy": "USD", "Rate": "abc", "Nominal": "1", "Date": "24.11.2026"}])):
        result = cbu_rates.fetch_rates(session, client=client)
        assert not result.ok and result.error and "stored rates stay" in str(result)
    assert len(session.exec(select(ExchangeRate)).all()) == 1
    assert rates.unit_rate(session, "USD", date(2026, 11, 24)) == Decimal("12100.00")


def test_bad_rows_are_skipped_and_the_good_ones_stored(session):
    payload = [FEED[0], {"Ccy": "EUR", "Rate": "-1", "Nominal": "1", "Date": "24.11.2026"},
               {"Ccy": "GBP", "Rate": "15000.10", "Nominal": "1", "Date": "2026-11-24"}, {"Ccy": "RU"}]
    result = cbu_rates.fetch_rates(session, client=transport(payload))
    assert result.ok and set(result.stored) == {"USD"} and len(result.skipped) == 3


def test_the_job_fetches_only_until_todays_rate_is_stored(session):
    now = datetime(2026, 11, 24, 4, 45, tzinfo=timezone.utc)  # 09:45 in Tashkent
    seen = []
    assert "CBU rates of 2026-11-24" in cbu_rates.fetch_if_missing(session, now, client=transport(seen=seen))
    assert cbu_rates.fetch_if_missing(session, now, client=transport(seen=seen)) == "CBU rates of 2026-11-24 already stored"
    assert len(seen) == 1


def test_a_manual_rate_is_replaced_by_the_banks(session):
    rates.store_rate(session, "USD", date(2026, 11, 24), Decimal("12000"), source="manual")
    session.commit()
    assert not cbu_rates.has_rate_for(session, date(2026, 11, 24))
    cbu_rates.fetch_rates(session, client=transport())
    row = session.exec(select(ExchangeRate).where(ExchangeRate.currency == "USD")).one()
    assert (row.rate, row.source) == (Decimal("12171.03"), "cbu")
