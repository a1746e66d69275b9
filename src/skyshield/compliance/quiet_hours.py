"""Quiet hours: marketing only inside a local-time window (default 08:00-21:00) of the recipient.

The recipient's zone is the one given with the message, else the one its number belongs to
(``phonenumbers``: +86 → Asia/Shanghai, +44 → Europe/London), else the policy's default. A number
whose range spans a few zones (+1 800...) must be inside the window in every one of them; one that
spans many is read in the region's main zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from skyshield.policy import PolicyError

#: Main zone of regions whose numbers may map to many zones (toll-free, non-geographic).
REGION_ZONES = {"CN": "Asia/Shanghai", "US": "America/New_York", "CA": "America/Toronto", "GB": "Europe/London",
                "RU": "Europe/Moscow", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo", "MX": "America/Mexico_City",
                "ID": "Asia/Jakarta"}
_MAX_ZONES = 4


def parse_window(text: str) -> tuple[time, time]:
    """``"08:00-21:00"`` → (08:00, 21:00): start inclusive, end exclusive."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not m:
        raise PolicyError(f"cannot read time window {text!r}: write e.g. \"08:00-21:00\"")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise PolicyError(f"time window {text!r} has an impossible time")
    return time(h1, m1), (time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2))


@lru_cache(maxsize=65536)
def zones_for_number(number: str, default_region: str = "CN") -> tuple[str, ...]:
    """IANA zones of a number; empty when the number says nothing about where it is."""
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
    if not zones:
        zones = tuple(z for z in pn_timezone._country_level_time_zones_for_number(parsed) if z != "Etc/Unknown")
    region = phonenumbers.region_code_for_country_code(parsed.country_code)
    main = REGION_ZONES.get(region)
    if len(zones) > _MAX_ZONES:
        zones = (main,) if main else ()
    elif main in zones:  # name the zone people know first (Europe/London, not Europe/Guernsey)
        zones = (main, *(z for z in zones if z != main))
    return zones


@lru_cache(maxsize=1024)
def _only_zones(country_code: int) -> frozenset[str]:
    """Every zone any number of this country code can map to, here or by the country-level fallback."""
    cc = str(country_code)
    return frozenset(z for key, zones in TIMEZONE_DATA.items() if key.startswith(cc) or cc.startswith(key)
                     for z in zones if z != pn_timezone.UNKNOWN_TIMEZONE)


@lru_cache(maxsize=1024)
def _country_level(country_code: int) -> tuple[str, ...]:
    """The zones ``phonenumbers`` falls back to for this country code (as its ``_country_level_...`` does)."""
    cc = str(country_code)
    return next((TIMEZONE_DATA[cc[:n]] for n in range(len(cc), 0, -1) if cc[:n] in TIMEZONE_DATA), ())


_E164 = re.compile(r"\+([1-9]\d{1,2}\d+)")


def _country_code(number: str) -> tuple[int, int] | None:
    """The country code ``phonenumbers.parse`` gives a plain ``+<digits>`` number, and how many digits follow
    it; None for anything else (national forms are not read here: in some regions digits may start an
    international prefix)."""
    m = _E164.fullmatch(number)
    if m:
        digits = m.group(1)
        for n in (1, 2, 3):  # country codes are prefix-free: the first that exists is the one
            if int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return int(digits[:n]), len(digits) - n
    return None


@lru_cache(maxsize=64)
def _region_dialling(region: str) -> tuple[int, re.Pattern[str]] | None:
    """The country code of ``region`` and its international (IDD) prefix, as ``phonenumbers`` reads them."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or not meta.country_code:
        return None
    return meta.country_code, re.compile(meta.international_prefix or "(?!)")


def _national_country_code(number: str, region: str) -> int | None:
    """The country code ``phonenumbers.parse(number, region)`` gives a number of plain ASCII digits that does
    not start with the region's international prefix (it is read as national, or as the region's own country
    code and a national number); None for anything else."""
    if not (number.isascii() and number.isdigit()):
        return None
    dialling = _region_dialling(region)
    if dialling is None or dialling[1].match(number):
        return None
    return dialling[0]


@dataclass(frozen=True, slots=True)
class QuietCheck:
    """Outcome for one message: inside the window or not, and the local time that decided it."""

    allowed: bool
    zone: str
    local_time: str


class QuietHours:
    def __init__(self, window: str = "08:00-21:00", default_timezone: str = "Asia/Shanghai",
                 default_region: str = "CN"):
        self.start, self.end = parse_window(window)
        self.window = window
        try:
            ZoneInfo(default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"unknown time zone {default_timezone!r}") from None
        self.default_timezone = default_timezone
        self.default_region = default_region

    def _sure_zone(self, recipient: str) -> str | None:
        """The zone the full lookup would give, where the number's country code alone decides it; else None.

        Saves parsing and typing every distinct recipient of a one-zone country: when the country has no
        zone but the default (e.g. +86 under Asia/Shanghai) any answer is the default, even for a number that
        fails to parse; when it has one other zone, a number of ordinary length (which parses) gets that one.
        """
        found = _country_code(recipient)
        if found is None:
            # A national number (digits only, not starting with the region's international prefix) belongs
            # to the default region: the bench's and many carriers' form for every domestic recipient.
            cc = _national_country_code(recipient, self.default_region)
            return self.default_timezone if cc is not None and _only_zones(cc) <= {self.default_timezone} else None
        cc, digits = found
        zones = _only_zones(cc)
        if zones <= {self.default_timezone}:
            return self.default_timezone
        if len(zones) == 1 and 4 <= digits <= 15 and set(_country_level(cc)) == zones:
            return next(iter(zones))
        return None

    def _inside(self, local: datetime) -> bool:
        t = local.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # a window across midnight

    def check(self, when: datetime, recipient: str, zone: str | None = None) -> QuietCheck:
        """Is ``when`` inside the window for this recipient? An invalid explicit zone raises ValueError."""
        if zone:
            try:
                zones: tuple[str, ...] = (ZoneInfo(zone).key,)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone!r}") from None
        else:
            sure = self._sure_zone(recipient)
            zones = (sure,) if sure else zones_for_number(recipient, self.default_region) or (self.default_timezone,)
        for name in zones:
            local = when.astimezone(ZoneInfo(name))
            if not self._inside(local):
                return QuietCheck(False, name, local.strftime("%H:%M"))
        local = when.astimezone(ZoneInfo(zones[0]))
        return QuietCheck(True, zones[0], local.strftime("%H:%M"))
