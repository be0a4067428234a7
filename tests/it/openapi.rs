//! `GET /api/openapi.json` against the routes the server really has:
//! every operation it describes answers (no 404, no 405), and every route
//! under `/api` is described (server functions as Leptos registered them,
//! the layer's as its `Mount` serves them). A route added without a
//! description, or described but gone, fails here.

use std::collections::BTreeSet;

use crate::support::*;

#[tokio::test]
async fn the_description_and_the_routes_agree() {
    let server = TestServer::start(&[("METRICS_TOKEN", "t0ken")]).await;
    let document: serde_json::Value = reqwest::get(server.url("/api/openapi.json"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }

    // What the server has under /api.
    let mut mounted: BTreeSet<(String, String)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| (method.as_str().to_string(), path.to_string()))
        .collect();
    for (method, path) in sse_notify::sse::Mount::default().paths() {
        mounted.insert((method.to_string(), path.to_string()));
    }
    mounted.insert(("GET".into(), "/api/openapi.json".into()));
    let described_api: BTreeSet<_> = described
        .iter()
        .filter(|(_, path)| path.starts_with("/api/"))
        .cloned()
        .collect();
    let missing: Vec<_> = mounted.difference(&described_api).collect();
    let stale: Vec<_> = described_api.difference(&mounted).collect();
    assert!(
        missing.is_empty(),
        "routes without a description: {missing:?}"
    );
    assert!(stale.is_empty(), "described but not routed: {stale:?}");

    // Every described operation answers something other than 404/405.
    let client = reqwest::Client::new();
    for (method, path) in &described {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client.request(method.clone(), server.url(path));
        if path == "/metrics" {
            request = request.header("authorization", "Bearer t0ken");
        }
        if method == reqwest::Method::POST {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        let status = request.send().await.expect("request").status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}: described but not served"
        );
    }
    // Every `$ref` points at a schema that exists.
    let text = document.to_string();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in text.split("#/components/schemas/").skip(1) {
        let name: String = reference
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        assert!(schemas.contains_key(&name), "dangling $ref {name}");
    }
    server.shutdown().await.expect("clean shutdown");
}
