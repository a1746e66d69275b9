"""Quiet hours skip the phone-number lookup where it could only give the default zone: same answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import phonenumbers

from skyshield.compliance.quiet_hours import QuietHours, zones_for_number


def test_the_shortcut_agrees_with_the_full_lookup_on_random_numbers() -> None:
    rng = random.Random(2)
    codes = list(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    setups = [QuietHours(), QuietHours("08:00-21:00", "Europe/Paris", "FR"), QuietHours("08:00-21:00", "UTC", "US")]
    shortcuts = 0
    for _ in range(6000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 20)))
        number = rng.choice(["+" + str(rng.choice(codes)), "+86", "+33", "+49", "+", "", "0086", "+86 "]) + digits
        for quiet in setups:
            sure = quiet._sure_zone(number)
            if sure:
                shortcuts += 1
                assert (zones_for_number(number, quiet.default_region) or (quiet.default_timezone,)) == (sure,), \
                    (number, quiet.default_timezone, sure)
    assert shortcuts > 3000  # +86 under every default, +33 and +49 of ordinary length...


def test_a_chinese_mobile_at_night_is_still_outside_the_window() -> None:
    quiet = QuietHours()  # 08:00-21:00 Asia/Shanghai
    found = quiet.check(datetime(2026, 3, 2, 15, 30, tzinfo=UTC), "+8613800138000")  # 23:30 in Shanghai
    assert not found.allowed and found.zone == "Asia/Shanghai" and found.local_time == "23:30"
    assert quiet.check(datetime(2026, 3, 2, 2, 0, tzinfo=UTC), "+8613800138000").allowed  # 10:00


def test_national_numbers_of_the_default_region_skip_the_lookup_unless_they_dial_abroad() -> None:
    china, us = QuietHours(), QuietHours("08:00-21:00", "UTC", "US")
    assert china._sure_zone("13800138000") == "Asia/Shanghai" == zones_for_number("13800138000")[0]
    assert china._sure_zone("8613800138000") == "Asia/Shanghai"
    # 00 is China's international prefix: 0014155552671 is a US number, looked up in full.
    assert china._sure_zone("0014155552671") is None
    assert china.check(datetime(2026, 3, 2, 16, 0, tzinfo=UTC), "0014155552671").zone == "America/Los_Angeles"
    assert china._sure_zone("138 0013 8000") is None  # not plain digits: the full lookup reads it
    assert us._sure_zone("4155552671") is None  # +1 spans many zones, none of them the default
