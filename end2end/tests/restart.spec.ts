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
