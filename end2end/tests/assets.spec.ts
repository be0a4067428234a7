import { expect, test, type Browser, type CDPSession, type Page } from "@playwright/test";

// What a visit downloads: the bundle under content-hashed names, brotli
// compressed, cached for good; pages and the event stream never cached or
// compressed by the server. The transfer sizes are printed (`transfer:`
// lines) for BENCHMARKS.md.

const PASSWORD = "correct horse battery";
const HASHED = /\/pkg\/sse_notify\.[A-Za-z0-9_-]{22}\.(js|wasm|css)$/;
const suffix = () => Math.floor(Math.random() * 1e6).toString(36);

/** A signed-in context (cookie set through the API), no page loaded yet. */
async function signedIn(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const signup = await page.request.post("/api/auth/signup", {
    form: { username: `ast${suffix()}`, password: PASSWORD },
  });
  expect(signup.status()).toBe(200);
  return page;
}

/** Counts the bytes received on the wire (headers and encoded bodies) for
 *  every finished request, by URL; the event stream never finishes and is
 *  counted apart. */
class Transfer {
  private urls = new Map<string, string>();
  private fromCache = new Set<string>();
  bytes = new Map<string, number>();

  static async on(page: Page): Promise<Transfer> {
    const cdp: CDPSession = await page.context().newCDPSession(page);
    const transfer = new Transfer();
    await cdp.send("Network.enable");
    cdp.on("Network.requestWillBeSent", (e) => transfer.urls.set(e.requestId, e.request.url));
    cdp.on("Network.requestServedFromCache", (e) => transfer.fromCache.add(e.requestId));
    cdp.on("Network.loadingFinished", (e) => {
      const url = transfer.urls.get(e.requestId) ?? "?";
      const bytes = transfer.fromCache.has(e.requestId) ? 0 : e.encodedDataLength;
      transfer.bytes.set(url, (transfer.bytes.get(url) ?? 0) + bytes);
    });
    return transfer;
  }

  total(): number {
    let sum = 0;
    for (const n of this.bytes.values()) sum += n;
    return sum;
  }

  of(pattern: RegExp): number {
    let sum = 0;
    for (const [url, n] of this.bytes) if (pattern.test(url)) sum += n;
    return sum;
  }

  reset() {
    this.bytes.clear();
  }
}

test("the bundle arrives hashed, brotli-compressed and immutable; pages stay private", async ({ browser }) => {
  const page = await signedIn(browser);
  const assets: { url: string; headers: Record<string, string>; status: number }[] = [];
  page.on("response", (r) => {
    if (new URL(r.url()).pathname.startsWith("/pkg/")) {
      assets.push({ url: r.url(), headers: r.headers(), status: r.status() });
    }
  });
  const document = await page.goto("/home");
  expect(document?.status()).toBe(200);
  expect(document?.headers()["cache-control"]).toBe("private, no-cache");
  await expect(page.getByTestId("status")).toHaveText("Connected");

  for (const kind of ["js", "wasm", "css"]) {
    const asset = assets.find((a) => a.url.endsWith(`.${kind}`));
    expect(asset, `a .${kind} file was loaded`).toBeDefined();
    expect(new URL(asset!.url).pathname).toMatch(HASHED);
    expect(asset!.status).toBe(200);
    expect(asset!.headers["content-encoding"]).toBe("br");
    expect(asset!.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expect(asset!.headers["vary"]).toContain("accept-encoding");
  }
  await page.context().close();
});

test("gzip for a client without brotli, the plain file without either, 304 on revalidation", async ({ browser }) => {
  const page = await signedIn(browser);
  await page.goto("/");
  const wasm = await page.locator('link[rel="preload"][as="fetch"]').getAttribute("href");
  expect(wasm).toMatch(HASHED);

  const gzip = await page.request.get(wasm!, { headers: { "accept-encoding": "gzip" } });
  expect(gzip.status()).toBe(200);
  expect(gzip.headers()["content-encoding"]).toBe("gzip");
  const plain = await page.request.get(wasm!, { headers: { "accept-encoding": "identity" } });
  expect(plain.headers()["content-encoding"]).toBeUndefined();
  expect(plain.headers()["content-type"]).toBe("application/wasm");
  const body = await plain.body();
  expect(body.subarray(0, 4)).toEqual(Buffer.from([0x00, 0x61, 0x73, 0x6d]));

  // Files that keep their name are revalidated: unchanged → 304, no body.
  const icon = await page.request.get("/favicon.svg");
  expect(icon.status()).toBe(200);
  expect(icon.headers()["cache-control"]).toBe("no-cache");
  const modified = icon.headers()["last-modified"];
  expect(modified).toBeTruthy();
  const again = await page.request.get("/favicon.svg", { headers: { "if-modified-since": modified } });
  expect(again.status()).toBe(304);
  expect((await again.body()).length).toBe(0);

  // A missing bundle file is a 404 page, never cached for good.
  const missing = await page.request.get("/pkg/sse_notify.nothere.wasm");
  expect(missing.status()).toBe(404);
  expect(missing.headers()["cache-control"]).toBe("private, no-cache");
  await page.context().close();
});

test("the event stream is never compressed", async ({ browser }) => {
  const page = await signedIn(browser);
  await page.goto("/");
  const seen = await page.evaluate(async () => {
    const abort = new AbortController();
    const response = await fetch("/api/sse", {
      headers: { accept: "text/event-stream" },
      signal: abort.signal,
    });
    const reader = response.body!.getReader();
    const first = await reader.read();
    abort.abort();
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      encoding: response.headers.get("content-encoding"),
      cache: response.headers.get("cache-control"),
      text: new TextDecoder().decode(first.value),
    };
  });
  expect(seen.status).toBe(200);
  expect(seen.type).toBe("text/event-stream");
  expect(seen.encoding).toBeNull();
  expect(seen.cache).toBe("no-cache");
  expect(seen.text).toContain("retry:");
  await page.context().close();
});

test("a repeat visit and a reload do not download the bundle again", async ({ browser }) => {
  const page = await signedIn(browser);
  const transfer = await Transfer.on(page);
  await page.goto("/home");
  await expect(page.getByTestId("status")).toHaveText("Connected");
  const first = { total: transfer.total(), bundle: transfer.of(/\/pkg\//) };
  expect(first.bundle).toBeGreaterThan(0);

  transfer.reset();
  await page.goto("/");
  await page.goto("/home");
  await expect(page.getByTestId("status")).toHaveText("Connected");
  const repeat = { total: transfer.total(), bundle: transfer.of(/\/pkg\//) };
  expect(repeat.bundle).toBe(0);

  transfer.reset();
  await page.reload();
  await expect(page.getByTestId("status")).toHaveText("Connected");
  const reload = { total: transfer.total(), bundle: transfer.of(/\/pkg\//) };
  // A reload may revalidate (a few hundred bytes of headers), never refetch.
  expect(reload.bundle).toBeLessThan(2_000);

  console.log(
    `transfer: first visit to /home ${first.total} B (bundle ${first.bundle} B); ` +
      `repeat visit (/ then /home) ${repeat.total} B (bundle ${repeat.bundle} B); ` +
      `reload of /home ${reload.total} B (bundle ${reload.bundle} B)`,
  );
  await page.context().close();
});
