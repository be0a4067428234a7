//! A server's `/metrics`, read as the tests need it.

use std::collections::BTreeMap;

/// Every sample of `/metrics` on `base` (read with the bearer `token`),
/// by series as printed (`name{labels}`).
pub async fn metrics(base: &str, token: &str) -> BTreeMap<String, f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}
