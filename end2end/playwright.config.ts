import { defineConfig, devices } from "@playwright/test";
import * as os from "node:os";
import * as path from "node:path";

// The Makefile builds the release server and passes its path and a free
// port; the defaults below suit a manual `npx playwright test` after
// `cargo leptos build --release --precompress` from the repository root.
const port = Number(process.env.E2E_PORT ?? 3917);
export const serverBin = process.env.SERVER_BIN ?? "../target/release/sse_notify";
export const dataDir =
  process.env.E2E_DATA_DIR ?? path.join(os.tmpdir(), `sse-notify-e2e-${port}`);

export const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 5_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: true,
  retries: 0,
  reporter: [["list"]],
  outputDir: "./test-results",
  use: {
    baseURL,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      // Debian's Chromium: Playwright's own browser download is not possible here.
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  projects: [{ name: "chromium", use: { ...devices["Desktop Chrome"] } }],
  webServer: {
    command: serverBin,
    cwd: "..",
    url: `${baseURL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? "target/site",
      DATA_DIR: dataDir,
      RUST_LOG: process.env.RUST_LOG ?? "info",
      METRICS_ADDR: "",
    },
  },
});
