//! Five-field cron expressions (`minute hour day-of-month month day-of-week`), as
//! `--etcd-snapshot-schedule-cron` takes them, and the next time one fires.
//!
//! Each field is a comma-separated list of `*` (or `?`), `N`, `A-B`, `*/S`, `A-B/S` or `N/S`
//! (from N to the field's maximum, every S). Day of week is 0–7, both 0 and 7 meaning
//! Sunday. The shortcuts `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`
//! and `@hourly` are accepted.
//!
//! Guarantees: [`Cron::parse`] refuses anything out of range or malformed, naming the field;
//! [`Cron::next_after`] returns the first matching minute strictly after the given time (at
//! second 0), or `None` when nothing matches within eight years (`0 0 30 2 *`). Day of month
//! and day of week combine as cron combines them: when both are restricted, a day matching
//! either fires; when one is `*` (as k3s's cron library: `*`, `?` or `*/1`), only the other
//! counts. Times are evaluated in UTC.

use std::fmt;

use time::{Date, Duration, Month, OffsetDateTime, Time};

/// How far [`Cron::next_after`] looks: long enough for the 29th of February of the next
/// leap year whatever the century.
const SEARCH_YEARS: i32 = 8;

/// A parsed schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    day_of_month_star: bool,
    day_of_week_star: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One field's name and bounds.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
    },
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
    },
];

impl Cron {
    /// Parses `text`; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron expression {trimmed:?} has {} fields; expected 5: minute hour \
                 day-of-month month day-of-week (for instance \"0 */12 * * *\")",
                fields.len()
            ));
        }
        let mut sets = [0u64; 5];
        for ((field, spec), set) in fields.iter().zip(&FIELDS).zip(&mut sets) {
            *set = parse_field(field, spec).map_err(|reason| {
                format!("cron expression {trimmed:?}: {}: {reason}", spec.name)
            })?;
        }
        // Day of week 7 is Sunday, as 0.
        let mut days_of_week = sets[4];
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Self {
            text: trimmed.to_string(),
            minutes: sets[0],
            hours: sets[1],
            days_of_month: sets[2],
            months: sets[3],
            days_of_week,
            day_of_month_star: is_star(fields[2]),
            day_of_week_star: is_star(fields[4]),
        })
    }

    /// The first minute strictly after `after` that the schedule matches (UTC).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let start = after.replace_time(Time::from_hms(after.hour(), after.minute(), 0).ok()?)
            + Duration::minutes(1);
        let last_year = start.year() + SEARCH_YEARS;
        let mut at = start;
        while at.year() <= last_year {
            if !has(self.months, u8::from(at.month()).into()) {
                at = first_of_next_month(at.date())?.midnight().assume_utc();
                continue;
            }
            if !self.day_matches(at.date()) {
                at = at.date().next_day()?.midnight().assume_utc();
                continue;
            }
            if !has(self.hours, at.hour().into()) {
                at = at.replace_minute(0).ok()? + Duration::hours(1);
                continue;
            }
            if !has(self.minutes, at.minute().into()) {
                at += Duration::minutes(1);
                continue;
            }
            return Some(at);
        }
        None
    }

    fn day_matches(&self, date: Date) -> bool {
        let by_month = has(self.days_of_month, date.day().into());
        let by_week = has(
            self.days_of_week,
            date.weekday().number_days_from_sunday().into(),
        );
        if self.day_of_month_star || self.day_of_week_star {
            by_month && by_week
        } else {
            by_month || by_week
        }
    }
}

fn has(set: u64, value: u32) -> bool {
    set & (1u64 << value) != 0
}

/// Whether a day field leaves the day to the other one (`*`, `?`, `*/1`).
fn is_star(field: &str) -> bool {
    matches!(field, "*" | "?" | "*/1")
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        month => (date.year(), month.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

fn parse_field(field: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut set = 0u64;
    for part in field.split(',') {
        set |= parse_part(part, spec)?;
    }
    Ok(set)
}

fn parse_part(part: &str, spec: &FieldSpec) -> Result<u64, String> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => {
            let step = number(step, "step")?;
            if step == 0 {
                return Err(format!("step 0 in {part:?}; a step is at least 1"));
            }
            (range, Some(step))
        }
        None => (part, None),
    };
    let (low, high) = if range == "*" || range == "?" {
        (spec.min, spec.max)
    } else if let Some((low, high)) = range.split_once('-') {
        (number(low, "range start")?, number(high, "range end")?)
    } else {
        let value = number(range, "value")?;
        // `N/S` runs from N to the maximum.
        (value, if step.is_some() { spec.max } else { value })
    };
    for value in [low, high] {
        if value < spec.min || value > spec.max {
            return Err(format!(
                "{value} in {part:?} is out of range {}-{}",
                spec.min, spec.max
            ));
        }
    }
    if low > high {
        return Err(format!("range {part:?} ends before it starts"));
    }
    let mut set = 0u64;
    let mut value = low;
    while value <= high {
        set |= 1u64 << value;
        value += step.unwrap_or(1);
    }
    Ok(set)
}

fn number(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a number"));
    }
    text.parse()
        .map_err(|_| format!("{what} {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(cron: &str, after: OffsetDateTime) -> OffsetDateTime {
        Cron::parse(cron)
            .expect("parses")
            .next_after(after)
            .expect("fires")
    }

    #[test]
    fn the_default_schedule_fires_at_midnight_and_noon() {
        let cron = "0 */12 * * *";
        assert_eq!(
            next(cron, datetime!(2026-11-28 10:15:30 UTC)),
            datetime!(2026-11-28 12:00 UTC)
        );
        assert_eq!(
            next(cron, datetime!(2026-11-28 12:00 UTC)),
            datetime!(2026-11-29 00:00 UTC),
            "strictly after"
        );
        assert_eq!(
            next(cron, datetime!(2026-12-31 23:59:59 UTC)),
            datetime!(2027-01-01 00:00 UTC)
        );
    }

    #[test]
    fn every_minute_fires_at_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", datetime!(2026-11-28 10:15:00 UTC)),
            datetime!(2026-11-28 10:16 UTC)
        );
        assert_eq!(
            next("* * * * *", datetime!(2026-11-28 10:15:59.9 UTC)),
            datetime!(2026-11-28 10:16 UTC)
        );
        assert_eq!(
            next("* * * * *", datetime!(2026-11-28 23:59:10 UTC)),
            datetime!(2026-11-29 00:00 UTC)
        );
    }

    #[test]
    fn ranges_steps_and_lists() {
        let at = datetime!(2026-11-28 10:16 UTC);
        assert_eq!(next("5-10 * * * *", at), datetime!(2026-11-28 11:05 UTC));
        assert_eq!(
            next("10-40/15 * * * *", at),
            datetime!(2026-11-28 10:25 UTC)
        );
        assert_eq!(next("7,3,50 * * * *", at), datetime!(2026-11-28 10:50 UTC));
        assert_eq!(next("30 1,22 * * *", at), datetime!(2026-11-28 22:30 UTC));
        assert_eq!(next("45/5 * * * *", at), datetime!(2026-11-28 10:45 UTC));
        assert_eq!(next("0 0 1 */3 *", at), datetime!(2027-01-01 00:00 UTC));
        assert_eq!(next("@hourly", at), datetime!(2026-11-28 11:00 UTC));
        assert_eq!(next("@monthly", at), datetime!(2026-12-01 00:00 UTC));
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_as_cron_does() {
        // 2026-11-28 is a Saturday.
        let saturday = datetime!(2026-11-28 10:00 UTC);
        // Both restricted: the 1st OR a Monday, whichever comes first.
        assert_eq!(next("0 0 1 * 1", saturday), datetime!(2026-11-30 00:00 UTC));
        assert_eq!(
            next("0 0 29 * 3", saturday),
            datetime!(2026-11-29 00:00 UTC)
        );
        // Day of week alone (day of month `*`): Mondays only.
        assert_eq!(next("0 0 * * 1", saturday), datetime!(2026-11-30 00:00 UTC));
        // Day of month alone: the 1st only.
        assert_eq!(next("0 0 1 * *", saturday), datetime!(2026-12-01 00:00 UTC));
        // 7 is Sunday as 0 is; a range through 7 too.
        assert_eq!(next("0 0 * * 7", saturday), datetime!(2026-11-29 00:00 UTC));
        assert_eq!(
            next("0 0 * * 6-7", saturday),
            datetime!(2026-11-29 00:00 UTC)
        );
        assert_eq!(next("0 0 * * 0", saturday), datetime!(2026-11-29 00:00 UTC));
    }

    #[test]
    fn rare_and_impossible_dates() {
        assert_eq!(
            next("0 0 29 2 *", datetime!(2026-11-28 10:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
        let never = Cron::parse("0 0 30 2 *").expect("parses");
        assert_eq!(never.next_after(datetime!(2026-11-28 10:00 UTC)), None);
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        for (text, reason) in [
            ("* * * *", "4 fields"),
            ("60 * * * *", "minute: 60"),
            ("* 24 * * *", "hour: 24"),
            ("* * 0 * *", "day of month: 0"),
            ("* * * 13 *", "month: 13"),
            ("* * * * 8", "day of week: 8"),
            ("*/0 * * * *", "step 0"),
            ("5-1 * * * *", "ends before it starts"),
            ("a * * * *", "not a number"),
            ("1,,2 * * * *", "not a number"),
            ("-1 * * * *", "not a number"),
        ] {
            let error = Cron::parse(text).expect_err(text);
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
