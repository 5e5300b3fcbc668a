//! When the contact centre is closed, from the opening hours the stack publishes (its
//! `OpeningHours` output: the windows of `openingHours` in `timeZone`): the week's closed
//! periods, and the weekly recurrences of the downtime that mutes the monitors during them. A
//! quiet night or weekend is the norm, not an incident.

use jiff::civil::{Date, Weekday};
use serde::Deserialize;

/// Minutes in a day, and in a week.
const DAY_MINUTES: u32 = 24 * 60;
const WEEK_MINUTES: u32 = 7 * DAY_MINUTES;

/// The stack's `OpeningHours` output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpeningHours {
    /// As the settings file says it (`Mon-Fri 08:00-18:00; Sat 09:00-13:00`, or `always`).
    pub text: String,
    /// The IANA time zone the hours are read in.
    #[serde(rename = "timeZone")]
    pub time_zone: String,
    /// `None` for a centre that never closes.
    pub windows: Option<Vec<OpeningWindow>>,
}

/// Open on `days` from `start` up to, not including, `end` (minutes after local midnight).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpeningWindow {
    pub days: Vec<Day>,
    pub start: u32,
    pub end: u32,
}

/// A day of the week, as the stack writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

const DAYS: [Day; 7] = [
    Day::Mon,
    Day::Tue,
    Day::Wed,
    Day::Thu,
    Day::Fri,
    Day::Sat,
    Day::Sun,
];

impl Day {
    fn index(self) -> u32 {
        match self {
            Day::Mon => 0,
            Day::Tue => 1,
            Day::Wed => 2,
            Day::Thu => 3,
            Day::Fri => 4,
            Day::Sat => 5,
            Day::Sun => 6,
        }
    }

    /// Its two-letter name in an RRULE's `BYDAY`.
    fn rrule(self) -> &'static str {
        ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][self.index() as usize]
    }

    fn weekday(self) -> Weekday {
        Weekday::from_monday_zero_offset(self.index() as i8).unwrap_or(Weekday::Monday)
    }
}

/// Why the stack's opening hours cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error(
        "the stack's OpeningHours output is not what this version writes ({0}): deploy this version (npx cdk deploy in cdk/)"
    )]
    Unreadable(String),
    #[error(
        "the stack's opening window {start}-{end} (minutes after midnight) is not within a day, or closes before it opens"
    )]
    BadWindow { start: u32, end: u32 },
}

impl OpeningHours {
    /// Reads the stack's `OpeningHours` output.
    pub fn from_output(output: &str) -> Result<OpeningHours, HoursError> {
        let hours: OpeningHours =
            serde_json::from_str(output).map_err(|error| HoursError::Unreadable(error.to_string()))?;
        for window in hours.windows.iter().flatten() {
            if window.start >= window.end || window.end > DAY_MINUTES || window.days.is_empty() {
                return Err(HoursError::BadWindow {
                    start: window.start,
                    end: window.end,
                });
            }
        }
        Ok(hours)
    }

    /// The week's closed periods, each as long as it lasts (a weekend is one period, not three
    /// nights), in the order of the week from the first that starts after an open minute.
    pub fn closed_periods(&self) -> Vec<ClosedPeriod> {
        let Some(windows) = &self.windows else {
            return Vec::new();
        };
        let mut open = vec![false; WEEK_MINUTES as usize];
        for window in windows {
            for day in &window.days {
                let from = day.index() * DAY_MINUTES;
                open[(from + window.start) as usize..(from + window.end) as usize].fill(true);
            }
        }
        let Some(first_open) = open.iter().position(|&is_open| is_open) else {
            return Vec::new();
        };
        let mut periods = Vec::new();
        let mut closed_since: Option<u32> = None;
        // Once round the week from an open minute, so that a period across Sunday midnight is whole.
        for step in 1..=WEEK_MINUTES {
            let minute = (first_open as u32 + step) % WEEK_MINUTES;
            match (open[minute as usize], closed_since) {
                (false, None) => closed_since = Some(minute),
                (true, Some(start)) => {
                    periods.push(ClosedPeriod::between(start, minute));
                    closed_since = None;
                }
                _ => {}
            }
        }
        periods.sort_by_key(|period| (period.day.index(), period.start));
        periods
    }
}

/// A closed period of the week: from `start` minutes after midnight on `day`, for `minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedPeriod {
    pub day: Day,
    pub start: u32,
    pub minutes: u32,
}

impl ClosedPeriod {
    /// From minute `start` of the week up to `end` (which may be in the next week).
    fn between(start: u32, end: u32) -> ClosedPeriod {
        ClosedPeriod {
            day: DAYS[(start / DAY_MINUTES) as usize],
            start: start % DAY_MINUTES,
            minutes: (end + WEEK_MINUTES - start) % WEEK_MINUTES,
        }
    }
}

/// Closed periods alike but for their day, as one weekly recurrence (`BYDAY=MO,TU,WE,TH`): a
/// downtime holds at most [`MAX_RECURRENCES`], and most centres' weeks then fit in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub days: Vec<Day>,
    pub start: u32,
    pub minutes: u32,
}

/// Recurrences one DataDog downtime can hold.
pub const MAX_RECURRENCES: usize = 5;

impl OpeningHours {
    /// The closed periods as weekly recurrences, periods of the same time and length together.
    pub fn recurrences(&self) -> Vec<Recurrence> {
        let mut recurrences: Vec<Recurrence> = Vec::new();
        for period in self.closed_periods() {
            match recurrences
                .iter_mut()
                .find(|recurrence| recurrence.start == period.start && recurrence.minutes == period.minutes)
            {
                Some(recurrence) => recurrence.days.push(period.day),
                None => recurrences.push(Recurrence {
                    days: vec![period.day],
                    start: period.start,
                    minutes: period.minutes,
                }),
            }
        }
        recurrences
    }
}

impl Recurrence {
    /// Its weekly RRULE.
    pub fn rrule(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|day| day.rrule()).collect();
        format!("FREQ=WEEKLY;BYDAY={}", days.join(","))
    }

    /// Its length as a downtime's duration: an integer and one unit.
    pub fn duration(&self) -> String {
        if self.minutes.is_multiple_of(60) {
            format!("{}h", self.minutes / 60)
        } else {
            format!("{}m", self.minutes)
        }
    }

    /// The local time it starts, `HH:MM`.
    pub fn start_time(&self) -> String {
        format!("{:02}:{:02}", self.start / 60, self.start % 60)
    }

    /// Its first start (local, with no offset, as a downtime's schedule takes it): on one of its
    /// days in the week before `today`, so that a period under way now is muted at once.
    pub fn first_start(&self, today: Date) -> String {
        let mut date = today;
        for _ in 0..7 {
            date = date.yesterday().unwrap_or(date);
            if self.days.iter().any(|day| day.weekday() == date.weekday()) {
                break;
            }
        }
        format!("{date}T{}", self.start_time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(windows: serde_json::Value) -> OpeningHours {
        OpeningHours::from_output(
            &serde_json::json!({"text": "t", "timeZone": "Europe/Dublin", "windows": windows}).to_string(),
        )
        .expect("readable")
    }

    fn described(hours: &OpeningHours) -> Vec<String> {
        hours
            .recurrences()
            .iter()
            .map(|recurrence| {
                format!(
                    "{} {} {}",
                    recurrence.rrule(),
                    recurrence.start_time(),
                    recurrence.duration()
                )
            })
            .collect()
    }

    #[test]
    fn weekday_nights_and_the_weekend_are_closed_periods() {
        let centre = hours(serde_json::json!([
            {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": 480, "end": 1080},
            {"days": ["SAT"], "start": 540, "end": 780}
        ]));
        assert_eq!(
            described(&centre),
            [
                "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH 18:00 14h",
                // Friday evening to Saturday's opening, then Saturday afternoon to Monday.
                "FREQ=WEEKLY;BYDAY=FR 18:00 15h",
                "FREQ=WEEKLY;BYDAY=SA 13:00 43h",
            ]
        );
        let closed: u32 = centre.closed_periods().iter().map(|period| period.minutes).sum();
        assert_eq!(closed, WEEK_MINUTES - 5 * 600 - 240);
    }

    #[test]
    fn a_period_across_sunday_midnight_is_one_period() {
        // Open only on Sunday evening and Monday morning: closed from Monday 02:00 to Sunday 20:00.
        let centre = hours(serde_json::json!([
            {"days": ["SUN"], "start": 1200, "end": 1440},
            {"days": ["MON"], "start": 0, "end": 120}
        ]));
        assert_eq!(described(&centre), ["FREQ=WEEKLY;BYDAY=MO 02:00 162h"]);
        let odd = hours(serde_json::json!([{"days": ["WED"], "start": 545, "end": 1000}]));
        assert_eq!(described(&odd), ["FREQ=WEEKLY;BYDAY=WE 16:40 9625m"]);
    }

    #[test]
    fn a_centre_always_open_has_no_closed_period() {
        assert!(hours(serde_json::Value::Null).closed_periods().is_empty());
        let every_minute = hours(serde_json::json!([
            {"days": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"], "start": 0, "end": 1440}
        ]));
        assert!(every_minute.closed_periods().is_empty());
    }

    #[test]
    fn the_first_start_is_on_one_of_its_days_in_the_past_week() {
        let saturday = Recurrence {
            days: vec![Day::Sat],
            start: 780,
            minutes: 60,
        };
        // 2026-12-05 is a Saturday: its first start is the Saturday before, so that DataDog
        // mutes at once a period under way now.
        let today = jiff::civil::date(2026, 12, 5);
        assert_eq!(saturday.first_start(today), "2026-11-28T13:00");
        let weeknights = Recurrence {
            days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu],
            ..saturday
        };
        assert_eq!(weeknights.first_start(today), "2026-12-03T13:00");
    }

    #[test]
    fn unreadable_hours_say_to_deploy_this_version() {
        let error = OpeningHours::from_output("Mon-Fri 09:00-17:00").expect_err("not JSON");
        assert!(error.to_string().contains("deploy this version"), "{error}");
        let backwards = r#"{"text":"t","timeZone":"UTC","windows":[{"days":["MON"],"start":600,"end":500}]}"#;
        assert!(matches!(
            OpeningHours::from_output(backwards),
            Err(HoursError::BadWindow { .. })
        ));
    }
}
