import { expect, test } from "@playwright/test";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, repo, serverBin } from "./own-servers";

// This test runs its own server, so that it can stop and start it.

async function startServer(port: number, dataDir: string): Promise<ChildProcess> {
  const child = spawn(serverBin, [], {
    cwd: repo,
    env: {
      ...process.env,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: "target/site",
      DATA_DIR: dataDir,
      RUST_LOG: "warn",
      METRICS_ADDR: "",
      // What these tests stop is not the drain (tests/it/cluster/drain.rs).
      SERVER_DRAIN_DELAY: "0s",
      SERVER_DRAIN_WINDOW: "0s",
    },
    stdio: "inherit",
  });
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/favicon.ico`);
      if (r.ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error("server did not start");
}

async function stopServer(child: ChildProcess) {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

test("stopping and restarting the server: the page reconnects by itself and says what it may have missed", async ({ browser }) => {
  test.setTimeout(60_000);
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-notify-restart-"));
  let server = await startServer(port, dataDir);
  const base = `http://127.0.0.1:${port}`;
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  try {
    const signup = await page.request.post("/api/auth/signup", {
      form: { username: "restarter", password: "correct horse battery" },
    });
    expect(signup.status()).toBe(200);
    await page.goto("/home");
    const status = page.getByTestId("status");
    await expect(status).toHaveText("Connected");

    await stopServer(server);
    await expect(status).toHaveText(/Reconnecting/, { timeout: 10_000 });

    // Same data directory: accounts and sessions survive the restart.
    server = await startServer(port, dataDir);
    await expect(status).toHaveText("Connected", { timeout: 20_000 });
    // Its last event id belongs to the previous run's history: the server
    // says it cannot replay, and the page says so.
    await expect(page.getByTestId("reset")).toHaveText(/The server restarted/, { timeout: 5_000 });

    const sent = await page.request.post("/api/sse/test", {
      data: { user: "restarter", message: "after the restart" },
    });
    expect(sent.status()).toBe(200);
    await expect(page.getByTestId("latest")).toHaveText("restarter: after the restart", { timeout: 2_000 });
  } finally {
    await context.close();
    await stopServer(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test("a server killed and started again: no notification is shown twice, and the page says what it resumed", async ({ browser }) => {
  test.setTimeout(60_000);
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-notify-kill-"));
  let server = await startServer(port, dataDir);
  const base = `http://127.0.0.1:${port}`;
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  const send = async (message: string, event?: string) => {
    const r = await page.request.post("/api/sse/test", {
      data: { user: "survivor", message, ...(event ? { event } : {}) },
    });
    expect(r.status()).toBe(200);
  };
  const arrivals = page.getByTestId("arrivals");
  try {
    const signup = await page.request.post("/api/auth/signup", {
      form: { username: "survivor", password: "correct horse battery" },
    });
    expect(signup.status()).toBe(200);
    await page.goto("/home");
    const status = page.getByTestId("status");
    await expect(status).toHaveText("Connected");
    for (const n of [0, 1, 2]) await send(`before ${n}`);
    await expect(arrivals).toHaveText("3 received in this tab");

    // SIGKILL: no drain, no goodbye; the page's stream just breaks.
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGKILL");
    await exited;
    await expect(status).toHaveText(/Reconnecting/, { timeout: 10_000 });

    server = await startServer(port, dataDir);
    // Sent while the page is (most likely) still away: stored ones are
    // resumed, the live one is reported as possibly missed.
    await send("after 0");
    await send("gone with the gap", "ping");
    await send("after 1");
    await expect(status).toHaveText("Connected", { timeout: 20_000 });
    await expect(page.getByTestId("reset")).toHaveText(
      /The server restarted: \d+ stored notification\(s\) you missed were delivered; live-only messages sent meanwhile may be missing\./,
      { timeout: 5_000 },
    );
    await expect(arrivals).toHaveText("5 received in this tab");
    await expect(arrivals).toHaveAttribute(
      "data-last",
      JSON.stringify(["before 0", "before 1", "before 2", "after 0", "after 1"]),
    );
    // And the inbox list holds each once.
    const listed = page.getByRole("list", { name: "Received notifications" }).locator("li .message");
    await expect(listed).toHaveCount(5);
    // Nothing more turns up later (the relay runs every second).
    await page.waitForTimeout(1_500);
    await expect(arrivals).toHaveText("5 received in this tab");
    await expect(listed).toHaveCount(5);
  } finally {
    await context.close();
    await stopServer(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
