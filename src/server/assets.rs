//! Static files and the 404 page, and who may cache what.
//!
//! The release build names the bundle after its content
//! (`pkg/sse_notify.<hash>.wasm`) and writes a brotli and a gzip copy of
//! every file beside it (`cargo leptos build --release --precompress`).
//! So a file under `/pkg/` never changes under its name: browsers and
//! proxies keep it a year without asking again (`immutable`). Everything
//! else is revalidated on every use (`no-cache`): a file outside `/pkg/`
//! answers `304` to `If-Modified-Since` when unchanged; pages and API
//! answers are also `private`, as they may show the signed-in user.
//! Compression is chosen by `Accept-Encoding` among the precompressed
//! copies (brotli, then gzip, then none); nothing is compressed per
//! request, so an event stream is never touched.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use leptos::config::LeptosOptions;
use leptos::prelude::IntoView;
use leptos_axum::ErrorHandler;
use tower_http::services::ServeDir;

/// For files whose name changes with their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For files that keep their name: use only after revalidating.
const REVALIDATE: &str = "no-cache";
/// For everything rendered per request (pages, JSON).
const PRIVATE: &str = "private, no-cache";

/// How long a static file may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Hashed names: a year, never revalidated.
    Immutable,
    /// Revalidated on every use.
    Revalidate,
}

/// Adds the routes for static files to `router`: the bundle directory
/// (`/pkg/…`, cached for good when `hashed`), and as the fallback, the
/// other files of the site root, else the 404 page rendered with
/// `context` (the same context the pages get).
pub fn serve_static<S, CX, SH, IV>(
    router: Router<S>,
    options: &LeptosOptions,
    hashed: bool,
    context: CX,
    shell: SH,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    CX: Fn() + Clone + Send + Sync + 'static,
    SH: Fn(LeptosOptions) -> IV + Clone + Send + Sync + 'static,
    IV: IntoView + 'static,
{
    let root = options.site_root.as_ref();
    let not_found = ErrorHandler::new_with_context(context, shell, options.clone());
    let pkg_lifetime = if hashed {
        Lifetime::Immutable
    } else {
        Lifetime::Revalidate
    };
    // A request for a missing bundle file gets the 404 page, not a file
    // from elsewhere; any method but GET/HEAD gets 405.
    let pkg = ServeDir::new(root)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(not_found.clone());
    let pkg = tower::ServiceBuilder::new()
        .layer(from_fn_with_state(pkg_lifetime, file_headers))
        .service(pkg);
    let others = ServeDir::new(root)
        .precompressed_br()
        .precompressed_gzip()
        .call_fallback_on_method_not_allowed(true)
        .fallback(not_found);
    let others = tower::ServiceBuilder::new()
        .layer(from_fn_with_state(Lifetime::Revalidate, file_headers))
        .service(others);
    let pkg_path = format!("/{}/{{*path}}", options.site_pkg_dir);
    router
        .route_service(&pkg_path, pkg)
        .fallback_service(others)
}

/// Cache lifetime and `Vary` on a file (or its `304`); a 404 page or an
/// error from the fallback keeps the private default.
async fn file_headers(
    State(lifetime): State<Lifetime>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    let served = status == StatusCode::OK
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if served {
        let headers = response.headers_mut();
        let value = match lifetime {
            Lifetime::Immutable => IMMUTABLE,
            Lifetime::Revalidate => REVALIDATE,
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
        // The same URL has several encodings: a shared cache must key on
        // what the client accepts (tower-http 0.6 does not say so itself).
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Outermost: a response that did not say how to cache it is `private,
/// no-cache` (pages show who is signed in; API answers are per request).
pub async fn private_by_default(request: Request<Body>, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static(PRIVATE));
    response
}

/// Whether the build left content-hashed bundle names for this binary:
/// cargo-leptos writes them to `hash.txt` beside the server executable,
/// where Leptos looks for them. Without that file (a debug build, tests)
/// the plain names are used; asking Leptos for hashed names then would
/// fail every page render.
pub fn hash_file_present(hash_file: &str) -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(hash_file)))
        .is_some_and(|path| path.is_file())
}
