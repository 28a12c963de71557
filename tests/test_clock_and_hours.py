"""Dutch holidays, day expressions and opening hours across DST and holiday edge cases."""
from __future__ import annotations

import datetime as dt

from appcare import clock, content, opening_hours as oh

TZ = clock.TZ


def test_koningsdag_on_sunday_moves_to_saturday():
    # 27 April 2025 was a Sunday: Koningsdag was Saturday 26 April.
    assert clock.public_holiday(dt.date(2025, 4, 26)) == "Koningsdag"
    assert clock.public_holiday(dt.date(2025, 4, 27)) is None
    day, label = clock.parse_day("koningsdag", dt.datetime(2025, 3, 1, 10, tzinfo=TZ))
    assert day == dt.date(2025, 4, 26) and "26 april" in label


def test_day_expressions():
    base = dt.datetime(2026, 11, 25, 10, tzinfo=TZ)  # a Wednesday
    assert clock.parse_day("morgen", base)[0] == dt.date(2026, 11, 26)
    assert clock.parse_day("zaterdag", base)[0] == dt.date(2026, 11, 28)
    assert clock.parse_day("2e kerstdag", base)[0] == dt.date(2026, 12, 26)
    assert clock.parse_day("tweede kerstdag", base)[0] == dt.date(2026, 12, 26)
    assert clock.parse_day("27 april", base)[0] == dt.date(2027, 4, 27)
    assert clock.parse_day("hemelvaart", base)[0] == dt.date(2027, 5, 6)
    assert clock.parse_day("volgende week dinsdag", base)[0] == dt.date(2026, 12, 1)
    assert clock.parse_day("vanavond ergens", base) is None  # unknown words after the day part: no day, no exception
    assert clock.parse_day("qqq", base) is None


def test_holiday_is_closed_and_next_opening_skips_it():
    terneuzen = content.load("terneuzen")
    hours = oh.hours_on(terneuzen, "balie", dt.date(2026, 12, 25))
    assert hours.closed and hours.reason == "Eerste Kerstdag"
    # Thursday 24 Dec after closing -> Fri 25 and Sat 26 are holidays, Sunday closed -> Monday 28.
    nxt = oh.next_opening(terneuzen, "balie", dt.datetime(2026, 12, 24, 21, 0, tzinfo=TZ))
    assert nxt == dt.datetime(2026, 12, 28, 8, 30, tzinfo=TZ)


def test_next_opening_across_dst_change_has_right_offset():
    lelystad = content.load("lelystad")
    # Saturday 24 Oct 2026, DST ends on Sunday 25 Oct: Monday opens at 9:00 CET (+01:00).
    nxt = oh.next_opening(lelystad, "balie", dt.datetime(2026, 10, 24, 12, 0, tzinfo=TZ))
    assert nxt.utcoffset() == dt.timedelta(hours=1)
    assert nxt.astimezone(dt.timezone.utc) == dt.datetime(2026, 10, 26, 8, 0, tzinfo=dt.timezone.utc)
    # Spring: Monday 30 March 2026 opens at 9:00 CEST (+02:00).
    nxt = oh.next_opening(lelystad, "balie", dt.datetime(2026, 3, 28, 12, 0, tzinfo=TZ))
    assert nxt.astimezone(dt.timezone.utc) == dt.datetime(2026, 3, 30, 7, 0, tzinfo=dt.timezone.utc)


def test_open_now_uses_local_time_not_utc():
    lelystad = content.load("lelystad")
    # 16:30 local in summer is 14:30 UTC: open (closes 17:00).
    moment = dt.datetime(2026, 6, 15, 14, 30, tzinfo=dt.timezone.utc)
    assert oh.is_open(lelystad, "balie", moment)
    assert not oh.is_open(lelystad, "balie", dt.datetime(2026, 6, 15, 15, 30, tzinfo=dt.timezone.utc))


def test_format_moment():
    ref = dt.datetime(2026, 11, 25, 18, 0, tzinfo=TZ)
    assert clock.format_moment(dt.datetime(2026, 11, 26, 8, 30, tzinfo=TZ), ref) == "morgen om 8:30"
    assert clock.format_moment(dt.datetime(2026, 11, 30, 8, 30, tzinfo=TZ), ref) == "maandag 30 november om 8:30"


def test_day_parts_compounds_and_named_days():
    base = dt.datetime(2026, 12, 7, 10, tzinfo=TZ)  # a Monday
    assert clock.parse_day("woensdagavond", base) == (dt.date(2026, 12, 9), "woensdagavond 9 december")
    assert clock.day_part("woensdagavond") == "avond"
    assert clock.parse_day("zaterdagochtend", base) == (dt.date(2026, 12, 12), "zaterdagochtend 12 december")
    assert clock.parse_day("donderdag middag", base) == (dt.date(2026, 12, 10), "donderdagmiddag 10 december")
    assert clock.parse_day("morgenochtend om kwart over negen", base) == (dt.date(2026, 12, 8), "morgenochtend")
    assert clock.day_part("morgenochtend om kwart over negen") == "ochtend"
    assert clock.parse_day("morgen", base) == (dt.date(2026, 12, 8), "morgen")
    assert clock.day_part("morgen") is None  # tomorrow, not the morning
    assert clock.parse_day("vanavond", base) == (dt.date(2026, 12, 7), "vanavond")
    assert clock.parse_day("vanmiddag", base)[0] == dt.date(2026, 12, 7)
    assert clock.parse_day("oudjaarsdag", base) == (dt.date(2026, 12, 31), "oudjaarsdag (donderdag 31 december)")
    assert clock.public_holiday(dt.date(2026, 12, 31)) is None  # not a public holiday
    assert clock.parse_day("oud en nieuw", base)[0] == dt.date(2026, 12, 31)
    assert clock.parse_day("kerstavond", base)[0] == dt.date(2026, 12, 24)
    assert clock.parse_day("2e paasdag", base)[0] == dt.date(2027, 3, 29)
    assert clock.parse_day("tweede pinksterdag", base)[0] == dt.date(2027, 5, 17)
    assert clock.parse_day("bevrijdingsdag", base)[0] == dt.date(2027, 5, 5)
    assert clock.parse_day("24-12", base)[0] == dt.date(2026, 12, 24)
    assert clock.parse_day("over twee weken", base)[0] == dt.date(2026, 12, 21)
    assert clock.parse_day("woensdg", base)[0] == dt.date(2026, 12, 9)  # typo
    # after this year's oudjaarsdag it is next year's
    assert clock.parse_day("oudjaarsdag", dt.datetime(2027, 1, 2, tzinfo=TZ))[0] == dt.date(2027, 12, 31)


def test_periods():
    wednesday = dt.datetime(2026, 11, 25, 10, tzinfo=TZ)
    days, label = clock.parse_period("tussen kerst en oud en nieuw", wednesday)
    assert days == [dt.date(2026, 12, d) for d in range(25, 32)]
    assert label == "tussen kerst en oud en nieuw (25 t/m 31 december)"
    days, label = clock.parse_period("deze week", wednesday)
    assert days == [dt.date(2026, 11, d) for d in range(25, 30)] and label.startswith("deze week")
    days, _ = clock.parse_period("door de week", wednesday)
    assert days == [dt.date(2026, 11, d) for d in range(23, 28)]  # Monday to Friday
    days, label = clock.parse_period("volgende week", wednesday)
    assert days[0] == dt.date(2026, 11, 30) and days[-1] == dt.date(2026, 12, 6)
    assert label == "volgende week (30 november t/m 6 december)"
    days, label = clock.parse_period("dit weekend", wednesday)
    assert days == [dt.date(2026, 11, 28), dt.date(2026, 11, 29)] and label == "dit weekend (28 en 29 november)"
    # asked during the period: only the days still to come
    days, _ = clock.parse_period("tussen kerst en oud en nieuw", dt.datetime(2026, 12, 28, 9, tzinfo=TZ))
    assert days == [dt.date(2026, 12, d) for d in range(28, 32)]
    # a single day is no period
    assert clock.parse_period("volgende week dinsdag", wednesday) is None
    assert clock.parse_period("zaterdag", wednesday) is None
    assert clock.parse_period("", wednesday) is None
