//! Canary checks (SECURITY.md S8): a [`Capture`] layer that records every `tracing` span, span
//! record and event as one line of text, at every level and target; the [`forms`] a secret may
//! take when something shows it (raw, percent-, form-, base64- and hex-encoded, escaped, cut
//! short); and [`leak`], which finds any of them in a text.
//!
//! The capture is only a [`Layer`]: the test chooses how to install it (globally in a binary of
//! its own, or as a scoped dispatcher), since a process has one global subscriber.
//!
//! It must never: drop a field (a secret hidden in a field the capture skips would pass), or
//! format a value in one way only (`&str` fields are kept both verbatim and escaped, errors with
//! their whole source chain).

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// What a form or query-string encoder leaves as it is besides letters and digits.
const FORM_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b'=');

/// The characters of a secret's prefix that [`forms`] also looks for: long enough to be
/// unique, so a truncated or split copy shows too.
pub const PREFIX_CHARS: usize = 16;

/// A `tracing` layer keeping every span, span record and event as one line:
/// `span LEVEL target name: fields`, `record name: fields`, `event LEVEL target [scope]: fields`.
/// Clones share the lines.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<String>>>);

impl Capture {
    /// Every line captured so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

/// Every field as ` name=value`: `&str` values verbatim and escaped, errors with their sources.
#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value} ({value:?})", field.name());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let _ = write!(self.0, " {}={value} ({value:?})", field.name());
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(self.0, " <- {s} ({s:?})");
            source = s.source();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let m = attrs.metadata();
        self.push(format!(
            "span {} {} {}:{}",
            m.level(),
            m.target(),
            m.name(),
            fields.0
        ));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let name = ctx.span(id).map_or("?", |s| s.name());
        self.push(format!("record {name}:{}", fields.0));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope: Vec<&str> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name()).collect())
            .unwrap_or_default();
        let m = event.metadata();
        self.push(format!(
            "event {} {} [{}]:{}",
            m.level(),
            m.target(),
            scope.join(">"),
            fields.0
        ));
    }
}

/// Every form of `secret` that must never show: itself; percent-encoded (upper- and lower-case
/// hex) and as a form encoder writes it; base64 (standard and URL-safe, padded or not); hex
/// (both cases); its bytes' `Debug`; `escape_debug` and `escape_unicode`; and its first
/// [`PREFIX_CHARS`] characters when it is longer (a truncated copy).
pub fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let percent = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
    let mut forms = vec![
        secret.to_owned(),
        percent.to_lowercase(),
        percent,
        utf8_percent_encode(secret, FORM_KEEPS).to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
        format!("{bytes:?}"),
        secret.escape_debug().to_string(),
        secret.escape_unicode().to_string(),
    ];
    if secret.chars().count() > PREFIX_CHARS {
        forms.push(secret.chars().take(PREFIX_CHARS).collect());
    }
    forms.sort();
    forms.dedup();
    forms
}

/// The first of `forbidden` found in `text`, if any.
pub fn leak<'a>(forbidden: &'a [String], text: &str) -> Option<&'a str> {
    forbidden
        .iter()
        .find(|f| text.contains(f.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn forms_cover_the_encodings_and_leak_finds_each() {
        let forms = forms("pa ss+/w=rd&x%y-1234567890");
        for expected in [
            "pa ss+/w=rd&x%y-1234567890",
            "pa%20ss%2B%2Fw%3Drd%26x%25y%2D1234567890",
            "pa%20ss%2b%2fw%3drd%26x%25y%2d1234567890",
            "pa%20ss%2B/w=rd%26x%25y-1234567890",
            "cGEgc3MrL3c9cmQmeCV5LTEyMzQ1Njc4OTA=",
            "cGEgc3MrL3c9cmQmeCV5LTEyMzQ1Njc4OTA",
            "70612073732b2f773d7264267825792d31323334353637383930",
            "70612073732B2F773D7264267825792D31323334353637383930",
            "pa ss+/w=rd&x%y-",
        ] {
            assert!(forms.iter().any(|f| f == expected), "{expected} missing");
        }
        for form in &forms {
            assert!(leak(&forms, &format!("x {form} y")).is_some());
        }
        assert_eq!(leak(&forms, "nothing here"), None);
    }

    #[test]
    fn the_capture_keeps_spans_records_and_events_with_every_field() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("outer", user = "u1", late = tracing::field::Empty);
            let _entered = span.enter();
            span.record("late", 7);
            let error = std::io::Error::other("boom");
            tracing::trace!(target: "kit", text = "a\"b", error = &error as &dyn std::error::Error, "hello");
        });
        let lines = capture.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("span INFO "), "{}", lines[0]);
        assert!(lines[0].contains("user=u1 (\"u1\")"), "{}", lines[0]);
        assert_eq!(lines[1], "record outer: late=7");
        assert!(
            lines[2].starts_with("event TRACE kit [outer]:"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("text=a\"b (\"a\\\"b\")"), "{}", lines[2]);
        assert!(lines[2].contains("error=boom"), "{}", lines[2]);
        assert!(lines[2].contains("message=hello"), "{}", lines[2]);
    }
}
