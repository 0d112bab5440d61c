//! The cursor: a position in a table's change order, the ceiling that bounds a run, how two
//! positions order, and the one text form of a cursor timestamp (with the calendar arithmetic
//! and the hex form of binary keys that go with it).
//!
//! Cursors are kept as exact source text in manifests and watermarks, so that what a run stored
//! is what the next run binds. Every piece of code that reads, writes, orders or moves a cursor
//! timestamp goes through [`CursorTimestamp`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A position in a table's change order: the cursor column's value and the key's values, kept as
/// exact source text (timestamps as `YYYY-MM-DD HH:MM:SS.ffffff`, integers in decimal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The timestamp cursor column's value, if the strategy has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The key columns' values (or the id column's, for `id_only`), in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
}

impl Cursor {
    /// True when the cursor names no position (the start of the table).
    pub fn is_start(&self) -> bool {
        self.timestamp.is_none() && self.key.is_empty()
    }

    /// Orders two positions: by timestamp, then by key values (integers numerically).
    ///
    /// Not `Ord`: `7` and `007` are the same position but different text, and `Ord` must agree
    /// with the derived `Eq`. Stored cursors are always canonical, so the difference never shows.
    pub fn compare(&self, other: &Cursor) -> Ordering {
        self.timestamp.cmp(&other.timestamp).then_with(|| {
            for (x, y) in self.key.iter().zip(&other.key) {
                let order = compare_key_values(x, y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            self.key.len().cmp(&other.key.len())
        })
    }
}

impl fmt::Display for Cursor {
    /// `the start`, `timestamp 2026-01-01 00:00:00.000000`, `key (7, abc)`, or both.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.timestamp, self.key.as_slice()) {
            (None, []) => f.write_str("the start"),
            (Some(timestamp), []) => write!(f, "timestamp {timestamp}"),
            (None, key) => write!(f, "key ({})", key.join(", ")),
            (Some(timestamp), key) => write!(f, "timestamp {timestamp}, key ({})", key.join(", ")),
        }
    }
}

/// Orders two key values: numerically when both are integers, else as text.
pub fn compare_key_values(a: &str, b: &str) -> Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The upper bound of a run, fixed at begin from the source so that the run always ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// `NOW(6) - lag` on the source, for timestamp cursors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// `MAX(id)` on the source, for id cursors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Ceiling {
    /// True when the ceiling bounds nothing (a `full_sync` run reads the whole table).
    pub fn is_unbounded(&self) -> bool {
        self.timestamp.is_none() && self.id.is_none()
    }

    /// Whether `cursor` lies at or below the ceiling: its timestamp at most the timestamp
    /// ceiling, and for an id cursor (no timestamp) its id at most the id ceiling.
    pub fn contains(&self, cursor: &Cursor) -> bool {
        let timestamp_ok = match (&cursor.timestamp, &self.timestamp) {
            (Some(value), Some(limit)) => value <= limit,
            _ => true,
        };
        let id_ok = match (cursor.key.first(), &self.id, &cursor.timestamp) {
            (Some(value), Some(limit), None) => {
                compare_key_values(value, limit) != Ordering::Greater
            }
            _ => true,
        };
        timestamp_ok && id_ok
    }
}

impl fmt::Display for Ceiling {
    /// `no ceiling`, `timestamp 2026-01-01 00:00:00.000000`, `id 42`, or both.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.timestamp, &self.id) {
            (None, None) => f.write_str("no ceiling"),
            (Some(timestamp), None) => write!(f, "timestamp {timestamp}"),
            (None, Some(id)) => write!(f, "id {id}"),
            (Some(timestamp), Some(id)) => write!(f, "timestamp {timestamp}, id {id}"),
        }
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A MySQL DATE/DATETIME/TIMESTAMP value as the binary protocol sends it, which is also what a
/// cursor timestamp holds. Orders like the value (the fields are in significance order). Zero
/// and impossible dates (`0000-00-00`, `2026-02-30`) are representable, because MySQL stores
/// them; [`CursorTimestamp::is_calendar_date`] tells them apart.
///
/// Its one text form is `YYYY-MM-DD HH:MM:SS.ffffff` ([`Display`](fmt::Display)); parsing also
/// takes fewer fraction digits and a bare `YYYY-MM-DD` (the text of a DATE key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CursorTimestamp {
    /// Year, 0–9999.
    pub year: u16,
    /// Month, 1–12 (0 in a zero date).
    pub month: u8,
    /// Day of the month (0 in a zero date).
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59.
    pub second: u8,
    /// Microsecond, 0–999999.
    pub micro: u32,
}

impl CursorTimestamp {
    /// The earliest value, `0001-01-01 00:00:00`: below every real row.
    pub const EARLIEST: CursorTimestamp = CursorTimestamp {
        year: 1,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        micro: 0,
    };

    /// Parses a timestamp an operator typed (`watermark set`): the full form only, with
    /// `HH:MM:SS`, and a date that exists. Answers the one text form.
    pub fn parse_operator_input(text: &str) -> Result<String> {
        let refused = || {
            Error::InvalidRequest(format!(
                "`{text}` is not a timestamp: write `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM:SS.ffffff` (UTC for TIMESTAMP columns, as stored for DATETIME)"
            ))
        };
        if !text.trim().contains(' ') {
            return Err(refused());
        }
        let parsed: CursorTimestamp = text.parse().map_err(|_| refused())?;
        if !parsed.is_calendar_date() {
            return Err(refused());
        }
        Ok(parsed.to_string())
    }

    /// `YYYY-MM-DD`: the text of a DATE key value.
    pub fn date_text(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// Whether the date exists in the proleptic Gregorian calendar (not a MySQL zero date).
    pub fn is_calendar_date(&self) -> bool {
        epoch_days(self.year, self.month, self.day).is_some()
    }

    /// Microseconds since the epoch, or `None` for a zero or impossible date.
    pub fn epoch_micros(&self) -> Option<i64> {
        let days = i64::from(epoch_days(self.year, self.month, self.day)?);
        let seconds =
            (i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second);
        Some(days * MICROS_PER_DAY + seconds * 1_000_000 + i64::from(self.micro))
    }

    /// The same instant as chrono's value, or `None` for a zero or impossible date.
    pub fn to_naive(&self) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(
            i32::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )?
        .and_hms_micro_opt(
            u32::from(self.hour),
            u32::from(self.minute),
            u32::from(self.second),
            self.micro,
        )
    }

    /// `by` earlier, or `None` for a zero or impossible date or a result before year 1.
    pub fn minus(&self, by: Duration) -> Option<CursorTimestamp> {
        let earlier = self.to_naive()? - chrono::Duration::from_std(by).ok()?;
        let narrow = |v: u32| u8::try_from(v).ok();
        Some(CursorTimestamp {
            year: u16::try_from(earlier.year())
                .ok()
                .filter(|year| *year >= 1)?,
            month: narrow(earlier.month())?,
            day: narrow(earlier.day())?,
            hour: narrow(earlier.hour())?,
            minute: narrow(earlier.minute())?,
            second: narrow(earlier.second())?,
            micro: earlier.nanosecond() / 1000,
        })
    }
}

impl fmt::Display for CursorTimestamp {
    /// `YYYY-MM-DD HH:MM:SS.ffffff`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.micro
        )
    }
}

impl FromStr for CursorTimestamp {
    type Err = Error;

    /// `YYYY-MM-DD HH:MM:SS[.f…]` (up to six fraction digits) or `YYYY-MM-DD`. Checks the shape
    /// and the clock, not the calendar: a zero date a row holds must come back as it went out.
    fn from_str(text: &str) -> Result<CursorTimestamp> {
        let invalid = || {
            Error::InvalidRequest(format!(
                "`{text}` is not a cursor timestamp: expected `YYYY-MM-DD HH:MM:SS.ffffff`"
            ))
        };
        let digits = |part: &str, width: usize| -> Result<u32> {
            if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let narrow = |v: u32| u8::try_from(v).map_err(|_| invalid());
        let (date, time) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let [year, month, day] = split_exact(date, '-').ok_or_else(invalid)?;
        let mut parsed = CursorTimestamp {
            year: u16::try_from(digits(year, 4)?).map_err(|_| invalid())?,
            month: narrow(digits(month, 2)?)?,
            day: narrow(digits(day, 2)?)?,
            ..CursorTimestamp::default()
        };
        if !time.is_empty() {
            let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
            let [hour, minute, second] = split_exact(clock, ':').ok_or_else(invalid)?;
            parsed.hour = narrow(digits(hour, 2)?)?;
            parsed.minute = narrow(digits(minute, 2)?)?;
            parsed.second = narrow(digits(second, 2)?)?;
            if fraction.len() > 6 {
                return Err(invalid());
            }
            if !fraction.is_empty() {
                parsed.micro =
                    digits(fraction, fraction.len())? * 10u32.pow(6 - fraction.len() as u32);
            }
            if parsed.hour > 23 || parsed.minute > 59 || parsed.second > 59 {
                return Err(invalid());
            }
        }
        Ok(parsed)
    }
}

fn split_exact(text: &str, separator: char) -> Option<[&str; 3]> {
    let mut parts = text.split(separator);
    let found = [parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(found)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`), or
/// `None` for a zero or impossible date.
pub fn epoch_days(year: u16, month: u8, day: u8) -> Option<i32> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (month, day) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    i32::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Uppercase hex, as MySQL's `HEX()` prints it: the cursor text of a binary key value.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses hex text back into bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> CursorTimestamp {
        text.parse().unwrap()
    }

    #[test]
    fn epoch_days_match_chrono_across_the_whole_range() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for (y, m, d) in [
            (1970, 1, 1),
            (1969, 12, 31),
            (1000, 1, 1),
            (9999, 12, 31),
            (2000, 2, 29),
            (1900, 2, 28),
            (1, 1, 1),
            (2024, 3, 1),
        ] {
            let expected = NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .signed_duration_since(epoch)
                .num_days();
            assert_eq!(
                epoch_days(y as u16, m as u8, d as u8).map(i64::from),
                Some(expected),
                "{y}-{m}-{d}"
            );
        }
        for (y, m, d) in [
            (0, 0, 0),
            (2024, 2, 0),
            (2024, 0, 15),
            (1900, 2, 29),
            (2024, 4, 31),
        ] {
            assert_eq!(epoch_days(y, m, d), None, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn micros_keep_every_digit() {
        assert_eq!(at("1970-01-01 00:00:00.000001").epoch_micros(), Some(1));
        assert_eq!(
            at("9999-12-31 23:59:59.999999").epoch_micros(),
            Some(253_402_300_799_999_999)
        );
        assert_eq!(at("0000-00-00 00:00:00").epoch_micros(), None);
    }

    #[test]
    fn timestamps_round_trip_through_cursor_text() {
        let parts = CursorTimestamp {
            year: 2024,
            month: 2,
            day: 29,
            hour: 23,
            minute: 59,
            second: 58,
            micro: 120,
        };
        let text = parts.to_string();
        assert_eq!(text, "2024-02-29 23:59:58.000120");
        assert_eq!(at(&text), parts);
        assert_eq!(
            at("2024-01-02 03:04:05.5").to_string(),
            "2024-01-02 03:04:05.500000"
        );
        assert_eq!(at("2024-01-02").to_string(), "2024-01-02 00:00:00.000000");
        assert_eq!(
            at("0000-00-00 00:00:00").to_string(),
            "0000-00-00 00:00:00.000000"
        );
        for bad in [
            "2024-1-2 00:00:00",
            "2024-01-02 24:00:00",
            "x",
            "2024-01-02 00:00:00.1234567",
            "2024-01-02 00:00",
            "2024-01-02T00:00:00",
        ] {
            assert!(bad.parse::<CursorTimestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn operator_input_needs_a_time_and_a_real_date() {
        assert_eq!(
            CursorTimestamp::parse_operator_input("2026-01-02 03:04:05").unwrap(),
            "2026-01-02 03:04:05.000000"
        );
        assert_eq!(
            CursorTimestamp::parse_operator_input("2026-01-02 03:04:05.5").unwrap(),
            "2026-01-02 03:04:05.500000"
        );
        for bad in [
            "2026-01-02",
            "yesterday",
            "2026-13-01 00:00:00",
            "2026-02-30 00:00:00",
            "2026-01-02T03:04:05",
            "2026-01-02 03:04:05.1234567",
        ] {
            let err = CursorTimestamp::parse_operator_input(bad).unwrap_err();
            assert!(
                err.to_string().contains("YYYY-MM-DD HH:MM:SS"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn minus_crosses_days_and_refuses_zero_dates() {
        assert_eq!(
            at("2026-03-01 00:02:00.000001").minus(Duration::from_secs(300)),
            Some(at("2026-02-28 23:57:00.000001"))
        );
        assert_eq!(
            at("0000-00-00 00:00:00").minus(Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn cursors_order_keys_numerically() {
        let c = |ts: &str, id: &str| Cursor {
            timestamp: Some(ts.into()),
            key: vec![id.into()],
        };
        assert_eq!(c("a", "9").compare(&c("a", "10")), Ordering::Less);
        assert_eq!(c("b", "1").compare(&c("a", "10")), Ordering::Greater);
    }

    #[test]
    fn cursors_and_ceilings_read_as_their_values() {
        let cursor = Cursor {
            timestamp: Some("2026-01-01 00:00:00.000000".into()),
            key: vec!["7".into(), "x".into()],
        };
        assert_eq!(
            cursor.to_string(),
            "timestamp 2026-01-01 00:00:00.000000, key (7, x)"
        );
        assert_eq!(Cursor::default().to_string(), "the start");
        let ceiling = Ceiling {
            timestamp: None,
            id: Some("42".into()),
        };
        assert_eq!(ceiling.to_string(), "id 42");
        assert!(!ceiling.is_unbounded());
        assert!(Ceiling::default().is_unbounded());
    }

    #[test]
    fn a_ceiling_holds_cursors_at_or_below_it() {
        let ceiling = Ceiling {
            timestamp: Some("2026-01-01 00:00:00.000000".into()),
            id: Some("100".into()),
        };
        let ts = |t: &str| Cursor {
            timestamp: Some(t.into()),
            key: vec!["999".into()],
        };
        let id = |i: &str| Cursor {
            timestamp: None,
            key: vec![i.into()],
        };
        assert!(ceiling.contains(&ts("2026-01-01 00:00:00.000000")));
        assert!(!ceiling.contains(&ts("2026-01-01 00:00:00.000001")));
        assert!(ceiling.contains(&id("99")));
        assert!(ceiling.contains(&id("100")));
        assert!(!ceiling.contains(&id("101")));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xde, 0xad, 0xbe, 0xef]), "00DEADBEEF");
        assert_eq!(
            unhex("00DEADBEEF"),
            Some(vec![0x00, 0xde, 0xad, 0xbe, 0xef])
        );
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
