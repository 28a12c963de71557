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
    assert clock.parse_day("vanavond ergens", base) is None or True  # never raises
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
