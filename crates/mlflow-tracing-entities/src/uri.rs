//! The one rule for "is this an http(s) tracking URI".

/// Whether `uri` is an `http://` or `https://` URI with a host (scheme in any letter case,
/// surrounding whitespace ignored): what the SDK's REST clients accept as a tracking server or
/// renderer base, as opposed to `databricks`, `sqlite:…`, `file:…` or a bare path.
pub fn is_http_uri(uri: &str) -> bool {
    let trimmed = uri.trim();
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        trimmed
            .get(..scheme.len())
            .filter(|p| p.eq_ignore_ascii_case(scheme))
            .map(|_| &trimmed[scheme.len()..])
    });
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_http_uri;

    #[test]
    fn http_uris_need_a_scheme_and_a_host() {
        for ok in [
            "http://h",
            "https://h:5000/x",
            "HTTPS://H",
            " http://127.0.0.1:5000 ",
        ] {
            assert!(is_http_uri(ok), "{ok}");
        }
        for bad in [
            "databricks",
            "sqlite:///db",
            "file:///x",
            "http://",
            "https:///x",
            "h",
            "",
            "é",
        ] {
            assert!(!is_http_uri(bad), "{bad}");
        }
    }
}
