//! Timestamps in answers, for `#[serde(serialize_with = ...)]`: the same text as chrono's
//! own `Serialize` (RFC 3339 in UTC with `Z`, fractional seconds only when there are any:
//! `SecondsFormat::AutoSi`). chrono hands its formatter to serde_json through
//! `collect_str`, which escapes each piece written, one character at a time; here the text
//! is formatted into a `String` first and written in one piece.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// One timestamp.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// An optional timestamp (`null` when absent, unless the field is skipped).
pub fn option<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_some(&Text(at)),
        None => serializer.serialize_none(),
    }
}

/// A list of timestamps.
pub fn list<S: Serializer>(all: &[DateTime<Utc>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(all.iter().map(Text))
}

/// An optional list of timestamps.
pub fn option_list<S: Serializer>(
    all: &Option<Vec<DateTime<Utc>>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match all {
        Some(all) => serializer.serialize_some(&List(all)),
        None => serializer.serialize_none(),
    }
}

struct Text<'a>(&'a DateTime<Utc>);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, serializer)
    }
}

struct List<'a>(&'a [DateTime<Utc>]);

impl Serialize for List<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        list(self.0, serializer)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        one: DateTime<Utc>,
        #[serde(serialize_with = "option")]
        maybe: Option<DateTime<Utc>>,
        #[serde(serialize_with = "list")]
        all: Vec<DateTime<Utc>>,
        #[serde(serialize_with = "option_list")]
        maybe_all: Option<Vec<DateTime<Utc>>>,
    }

    #[derive(Serialize)]
    struct Chronos {
        one: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
        all: Vec<DateTime<Utc>>,
        maybe_all: Option<Vec<DateTime<Utc>>>,
    }

    #[test]
    fn writes_the_same_text_as_chronos_own_serialize() {
        let base = Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0).unwrap();
        let times = [
            base,
            base + Duration::milliseconds(120),
            base + Duration::microseconds(123_450),
            base + Duration::nanoseconds(123_456_789),
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap(),
        ];
        for &one in &times {
            for maybe in [None, Some(one + Duration::nanoseconds(1))] {
                for maybe_all in [None, Some(times.to_vec())] {
                    let ours = Ours {
                        one,
                        maybe,
                        all: times.to_vec(),
                        maybe_all: maybe_all.clone(),
                    };
                    let chronos = Chronos {
                        one,
                        maybe,
                        all: times.to_vec(),
                        maybe_all,
                    };
                    assert_eq!(
                        serde_json::to_string(&ours).unwrap(),
                        serde_json::to_string(&chronos).unwrap()
                    );
                }
            }
        }
        assert_eq!(
            serde_json::to_value(Ours {
                one: base,
                maybe: None,
                all: vec![],
                maybe_all: None
            })
            .unwrap()["one"],
            "2030-01-07T09:00:00Z"
        );
    }
}
