//! A short label for the device a session was created on ("Firefox on
//! Linux"), so that a person can tell their sessions apart on "your
//! sessions". Derived once, when the session is created, from the
//! `User-Agent` by a small rule rather than a parser crate: a label is a
//! hint for a person, never something to decide on (any client can send
//! any `User-Agent`).
//!
//! The rule: the first browser whose token appears (`Edg/` Edge, `OPR/`
//! Opera, `Firefox/`, `Chrome/` or `CriOS/` Chrome, `Safari/` Safari) and the
//! first system named (`Windows`, `iPhone`/`iPad` iOS, `Android`, `CrOS`
//! ChromeOS, `Mac OS X` macOS, `Linux`), as "browser on system", or either
//! alone. A client that is neither (`curl/8.5`, `python-requests/2.31`) is
//! named by its first product token, without the version. Only printable
//! ASCII is kept, and at most [`MAX_DEVICE_CHARS`] characters.

/// The longest device label stored.
pub const MAX_DEVICE_CHARS: usize = 64;

const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
];

const SYSTEMS: &[(&str, &str)] = &[
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
];

/// The device label of a `User-Agent` header value; `None` when nothing
/// printable is left of it.
pub(crate) fn label(user_agent: &[u8]) -> Option<String> {
    // Only printable ASCII: a label is shown on pages and in logs.
    let text: String = user_agent
        .iter()
        .take(512)
        .map(|&b| b as char)
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    let first = |table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(token, _)| text.contains(token))
            .map(|(_, name)| *name)
    };
    let label = match (first(BROWSERS), first(SYSTEMS)) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => {
            let product = text.trim().split([' ', '/']).next().unwrap_or("");
            product.chars().take(MAX_DEVICE_CHARS).collect()
        }
    };
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn common_browsers_and_systems_get_short_labels() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) CriOS/126.0 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31.0", "python-requests"),
        ];
        for (user_agent, expected) in cases {
            assert_eq!(label(user_agent.as_bytes()).as_deref(), Some(expected));
        }
    }

    #[test]
    fn hostile_user_agents_give_bounded_printable_labels_or_none() {
        assert_eq!(label(b""), None);
        assert_eq!(label(b"   "), None);
        assert_eq!(label(b"\x00\x01\x7f"), None);
        assert_eq!(
            label(b"evil\r\nSet-Cookie: x").as_deref(),
            Some("evilSet-Cookie:")
        );
        let long = "x".repeat(10_000);
        let got = label(long.as_bytes()).expect("label");
        assert_eq!(got.len(), super::MAX_DEVICE_CHARS);
        assert_eq!(label(b"\xff\xfe caf\xc3\xa9/1").as_deref(), Some("caf"));
    }
}
