"""Exchange rates from the Central Bank of Uzbekistan's public JSON feed.

The feed (``settings.cbu_url``, ``https://cbu.uz/ru/arkhiv-kursov-valyut/json/``) answers a JSON list
of objects whose values are all strings::

    {"id": 69, "Code": "840", "Ccy": "USD", "CcyNm_RU": "Доллар США", ..., "Nominal": "1",
     "Rate": "12171.03", "Diff": "-86.1", "Date": "24.09.2025"}

``Rate`` is the price in UZS of ``Nominal`` units (10 or 100 for some currencies), so one unit costs
``Rate / Nominal``; ``Date`` (dd.mm.yyyy) is the day the rate is in force. Every currency of the
answer is stored (USD, EUR, RUB and the others) with ``services.core.rates.store_rate`` under its
``Date``.

Today's rates: ``<cbu_url>``; another day: ``<cbu_url>all/YYYY-MM-DD/``; one currency:
``<cbu_url>USD/YYYY-MM-DD/``.

On any failure (network, HTTP status, not JSON, no usable row) nothing is stored and the error is
logged and returned: the stored rates stay, and ``services.core.rates.rate_on`` keeps using the latest
earlier day's rate ("yesterday's rate") until a later run succeeds (the rates job runs hourly and
fetches until the day's rate is there). A manual rate (``noventiq-panel rates set``) is replaced by
the bank's rate of the same day once the feed answers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import httpx
from sqlmodel import Session, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import ExchangeRate
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.core.money import BASE_CURRENCY

log = logging.getLogger(__name__)

FEED_TZ = "Asia/Tashkent"
TIMEOUT = httpx.Timeout(20.0, connect=10.0)
_CCY = re.compile(r"^[A-Z]{3}$")
_MICRO = Decimal("0.000001")


@dataclass
class FetchResult:
    ok: bool
    url: str
    stored: dict[str, Decimal] = field(default_factory=dict)  # currency -> rate of one unit
    rate_date: date | None = None
    skipped: list[str] = field(default_factory=list)  # rows that could not be read
    error: str = ""

    def __str__(self) -> str:
        if not self.ok:
            return f"CBU rates not fetched ({self.error}); the stored rates stay in use"
        usd = self.stored.get("USD")
        text = f"CBU rates of {self.rate_date}: {len(self.stored)} currencies"
        if usd is not None:
            text += f", USD {usd}"
        if self.skipped:
            text += f"; {len(self.skipped)} rows skipped"
        return text


def feed_url(day: date | None = None, currency: str | None = None, base: str | None = None) -> str:
    base = (base or get_settings().cbu_url).rstrip("/") + "/"
    if day is None and currency is None:
        return base
    return f"{base}{currency.upper() if currency else 'all'}/{(day or date.today()).isoformat()}/"


def parse_feed(payload) -> tuple[dict[str, tuple[Decimal, date]], list[str]]:
    """{currency: (rate of one unit, date)} and descriptions of the rows that were skipped."""
    if not isinstance(payload, list):
        raise ValueError("the feed is not a JSON list")
    out: dict[str, tuple[Decimal, date]] = {}
    skipped: list[str] = []
    for item in payload:
        try:
            ccy = str(item["Ccy"]).strip().upper()
            if not _CCY.match(ccy) or ccy == BASE_CURRENCY:
                raise ValueError(f"currency code {ccy!r}")
            rate = Decimal(str(item["Rate"]).strip().replace(",", "."))
            nominal = Decimal(str(item.get("Nominal", "1")).strip() or "1")
            if not rate.is_finite() or rate <= 0 or not nominal.is_finite() or nominal <= 0:
                raise ValueError(f"rate {item.get('Rate')!r} / nominal {item.get('Nominal')!r}")
            day = datetime.strptime(str(item["Date"]).strip(), "%d.%m.%Y").date()
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            skipped.append(f"{str(item)[:80]}: {exc}")
            continue
        unit = (rate / nominal).quantize(_MICRO, rounding=ROUND_HALF_UP)
        if unit <= 0:
            skipped.append(f"{ccy}: rate too small")
            continue
        out[ccy] = (unit, day)
    return out, skipped


def fetch_rates(session: Session, day: date | None = None, *, client: httpx.Client | None = None,
                url: str | None = None) -> FetchResult:
    """Fetch the feed (today's, or ``day``'s) and store every currency in it. Commits.

    Never raises for a feed problem: returns ``FetchResult(ok=False, error=...)`` and logs it.
    """
    url = url or feed_url(day)
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=True,
                                    headers={"User-Agent": "noventiq-panel rates job"})
    try:
        response = client.get(url)
        response.raise_for_status()
        parsed, skipped = parse_feed(response.json())
        if not parsed:
            raise ValueError("no usable rate in the answer")
    except (httpx.HTTPError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("CBU feed %s failed: %s; keeping the stored rates", url, error)
        return FetchResult(ok=False, url=url, error=error)
    finally:
        if own:
            client.close()
    result = FetchResult(ok=True, url=url, skipped=skipped)
    try:
        for ccy, (unit, rate_day) in sorted(parsed.items()):
            rates.store_rate(session, ccy, rate_day, unit, source="cbu")
            result.stored[ccy] = unit
            result.rate_date = max(result.rate_date or rate_day, rate_day)
        session.commit()
    except Exception:
        session.rollback()
        raise
    if skipped:
        log.info("CBU feed: %d rows skipped: %s", len(skipped), "; ".join(skipped[:3]))
    return result


def has_rate_for(session: Session, day: date, currency: str = "USD") -> bool:
    """Whether the bank's rate of ``day`` is stored (a manual or demo one does not count)."""
    return session.exec(
        select(ExchangeRate.id).where(ExchangeRate.currency == currency, ExchangeRate.rate_date == day,
                                      ExchangeRate.source == "cbu")
    ).first() is not None


def fetch_if_missing(session: Session, now: datetime | None = None, *, client: httpx.Client | None = None) -> str:
    """The rates job: fetch today's feed unless the bank's rate of today (Tashkent) is stored."""
    now = now or utcnow()
    today = clock.local_date(now, FEED_TZ)
    if has_rate_for(session, today):
        session.commit()
        return f"CBU rates of {today} already stored"
    return str(fetch_rates(session, client=client))


__all__ = ["FetchResult", "feed_url", "fetch_if_missing", "fetch_rates", "has_rate_for", "parse_feed"]
