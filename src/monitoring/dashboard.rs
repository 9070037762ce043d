//! `GET /monitoring`: the dashboard page, embedded in the binary.
//!
//! One self-contained HTML file (`dashboard.html`: inline CSS and
//! JavaScript, no external asset, no build step) that polls
//! `monitoring/overview`, `monitoring/alerts` and `monitoring/alerts/history`
//! relative to its own path,
//! so that it works wherever the fragment is nested. It keeps a rolling
//! buffer of the figures it polled for its charts, draws the alert history
//! as a timeline (one lane per rule: pending, firing, silenced), each health
//! check's last runs with a flapping mark, and each SLO's error budget left;
//! it shows a banner and keeps
//! its last data when an endpoint fails, and inserts every text as text,
//! never as markup. `tests/dashboard` renders it in headless Chromium.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

/// The page: one self-contained HTML file, no external asset.
const PAGE: &str = include_str!("dashboard.html");

/// Serves the page with `Cache-Control: no-store`.
pub(crate) async fn page() -> Response {
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn serves_the_page_uncached() {
        let res = page().await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, PAGE.as_bytes());
    }

    #[test]
    fn the_page_is_small() {
        // One request, no asset: 48 KB uncompressed, about 12 KB gzipped.
        assert!(PAGE.len() < 48 * 1024, "{} bytes", PAGE.len());
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // The one absolute URL is the SVG namespace, which is not fetched.
        let without_ns = PAGE.replace("'http://www.w3.org/2000/svg'", "");
        for needle in ["http://", "https://", "//cdn", "@import", "url(", "<link rel=\"stylesheet", " src="] {
            assert!(!without_ns.contains(needle), "{needle:?} in the page");
        }
        // No favicon request either (it would be a 404 counted as traffic).
        assert!(PAGE.contains("<link rel=\"icon\" href=\"data:,\">"));
    }

    #[test]
    fn the_page_inserts_text_as_text() {
        for needle in
            ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]
        {
            assert!(!PAGE.contains(needle), "{needle:?} in the page");
        }
    }

    #[test]
    fn the_page_reads_its_data_relative_to_its_own_path() {
        assert!(PAGE.contains("getJSON('overview')") && PAGE.contains("getJSON('alerts')"));
        assert!(PAGE.contains("location.pathname.replace(/\\/+$/, '') + '/'"));
    }

    #[test]
    fn the_page_has_the_stable_ids_tests_rely_on() {
        for id in [
            "request-count",
            "routes",
            "routes-body",
            "alerts",
            "alert-counts",
            "status-banner",
            "health-live",
            "health-checks",
            "timeline",
            "history",
            "slos",
        ] {
            assert!(PAGE.contains(&format!("id=\"{id}\"")), "#{id}");
        }
        for attr in [
            "'data-route'",
            "'data-alert-name'",
            "'data-severity'",
            "'data-cache'",
            "'data-check'",
            "'data-flapping'",
            "'data-slo'",
            "'data-transition'",
            "'data-span'",
        ] {
            assert!(PAGE.contains(attr), "{attr}");
        }
        assert!(PAGE.contains("aria-live=\"polite\""));
    }
}
