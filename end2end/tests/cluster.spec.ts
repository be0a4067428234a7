import { expect, request, test, type APIRequestContext } from "@playwright/test";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, repo, serverBin } from "./own-servers";

// Two server processes sharing Postgres and the Redis bus, behind nginx
// (Debian's package) running deploy/nginx.conf: the page is served by A
// (B is nginx's backup), the sender talks to B directly. A is stopped
// while notifications flow: the page reconnects through nginx to B and
// shows every notification once.
const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const postgresAdmin = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const nginxBin = fs.existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
const PASSWORD = "correct horse battery";

async function waitFor(url: string, what: string) {
  const probe = await request.newContext({ ignoreHTTPSErrors: true });
  try {
    for (let i = 0; i < 400; i++) {
      try {
        const r = await probe.get(url, { timeout: 1_000 });
        if (r.ok()) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await probe.dispose();
  }
  throw new Error(`${what} did not answer at ${url}`);
}

async function startServer(name: string, port: number, env: Record<string, string>): Promise<ChildProcess> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sse-notify-cluster-${name}-`));
  const child = spawn(serverBin, [], {
    cwd: repo,
    env: {
      ...process.env,
      ...env,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: "target/site",
      DATA_DIR: dataDir,
      BUS_INSTANCE: name,
      SERVER_TRUSTED_PROXIES: "127.0.0.1",
      SERVER_SHUTDOWN_TIMEOUT: "2s",
      RUST_LOG: "warn",
      METRICS_ADDR: "",
      // What these tests stop is not the drain (tests/it/cluster/drain.rs).
      SERVER_DRAIN_DELAY: "0s",
      SERVER_DRAIN_WINDOW: "0s",
    },
    stdio: "inherit",
  });
  await waitFor(`http://127.0.0.1:${port}/favicon.ico`, `server ${name}`);
  return child;
}

async function stop(child: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM") {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  await exited;
}

/// deploy/nginx.conf with its placeholders filled in.
function nginxConfig(runDir: string, listen: number, primary: number, backup: number): string {
  const template = fs.readFileSync(path.join(repo, "deploy/nginx.conf"), "utf8");
  const fill: Record<string, string> = {
    "@RUN_DIR@": runDir,
    "@LISTEN@": `127.0.0.1:${listen}`,
    "@CERT@": path.join(runDir, "cert.pem"),
    "@KEY@": path.join(runDir, "key.pem"),
    "@UPSTREAMS@": `server 127.0.0.1:${primary} max_fails=1 fail_timeout=30s;\n        server 127.0.0.1:${backup} backup;`,
  };
  let text = template;
  for (const [key, value] of Object.entries(fill)) text = text.split(key).join(value);
  return text.replace("worker_processes auto;", "worker_processes 1;");
}

async function login(ctx: APIRequestContext, name: string, signup: boolean) {
  const r = await ctx.post(signup ? "/api/auth/signup" : "/api/auth/login", {
    form: { username: name, password: PASSWORD },
  });
  expect(r.status(), `${signup ? "signup" : "login"} ${name}`).toBe(200);
}

test("a page behind nginx on A, sends on B; A stops mid-flow: the page goes on through B and misses nothing", async ({
  browser,
}) => {
  test.setTimeout(90_000);
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-notify-nginx-"));
  const dbName = `e2e_cluster_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  execFileSync("psql", [postgresAdmin, "-q", "-c", `CREATE DATABASE ${dbName}`]);
  const base = postgresAdmin.slice(0, postgresAdmin.lastIndexOf("/"));
  const shared = {
    DATABASE_URL: `${base}/${dbName}`,
    BUS_URL: redisUrl,
    BUS_PREFIX: `e2e-${dbName}`,
  };
  const [portA, portB, portNginx] = [await freePort(), await freePort(), await freePort()];
  let a: ChildProcess | undefined;
  let b: ChildProcess | undefined;
  let nginx: ChildProcess | undefined;
  try {
    a = await startServer("a", portA, shared);
    b = await startServer("b", portB, shared);
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-keyout", path.join(runDir, "key.pem"), "-out", path.join(runDir, "cert.pem"),
    ], { stdio: "ignore" });
    fs.writeFileSync(path.join(runDir, "nginx.conf"), nginxConfig(runDir, portNginx, portA, portB));
    nginx = spawn(nginxBin, ["-p", runDir, "-c", path.join(runDir, "nginx.conf"), "-g", "daemon off;"], {
      stdio: "inherit",
    });
    const front = `https://127.0.0.1:${portNginx}`;
    await waitFor(`${front}/favicon.ico`, "nginx");

    const reader = `rd${Date.now() % 1e6}`;
    const context = await browser.newContext({ baseURL: front, ignoreHTTPSErrors: true });
    await login(context.request, reader, true);
    const page = await context.newPage();
    await page.goto("/home");
    await expect(page.getByTestId("status")).toHaveText("Connected");
    // Served by A (B is the backup).
    const listing = await context.request.get("/api/sse/clients");
    expect((await listing.json()).bus).toMatchObject({ kind: "redis", connected: true });

    const sender = await request.newContext({ baseURL: `http://127.0.0.1:${portB}` });
    await login(sender, `sd${Date.now() % 1e6}`, true);
    const items = page.getByRole("list", { name: "Received notifications" }).getByRole("listitem");
    const total = 20;
    for (let n = 0; n < total; n++) {
      if (n === 6) {
        await expect(items).toHaveCount(6);
        await stop(a);
        a = undefined;
      }
      const sent = await sender.post("/api/sse/test", { data: { user: reader, message: `m-${n}` } });
      expect(sent.status()).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
    }
    await expect(page.getByTestId("status")).toHaveText("Connected", { timeout: 20_000 });
    await expect(items).toHaveCount(total, { timeout: 10_000 });
    for (let n = 0; n < total; n++) {
      await expect(items.filter({ has: page.getByText(`m-${n}`, { exact: true }) })).toHaveCount(1);
    }
    // Resumed from its Last-Event-ID on B's copy of the stream: nothing
    // to refetch, so the page was never told to (no `sse-reset`).
    await expect(page.getByTestId("reset")).toHaveText("");
    // The stream now comes from B, through nginx.
    const after = await context.request.get("/api/sse/clients");
    expect((await after.json()).bus.instance).toBe("b");

    // A comes back: it joins the bus; the page stays connected.
    a = await startServer("a", portA, shared);
    const late = await sender.post("/api/sse/test", { data: { user: reader, message: "m-late" } });
    expect(late.status()).toBe(200);
    await expect(items).toHaveCount(total + 1);
    await sender.dispose();
    await context.close();
  } finally {
    await stop(nginx, "SIGTERM");
    await stop(a);
    await stop(b);
    try {
      execFileSync("psql", [postgresAdmin, "-q", "-c", `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`]);
    } catch {
      // best effort
    }
    fs.rmSync(runDir, { recursive: true, force: true });
  }
});
