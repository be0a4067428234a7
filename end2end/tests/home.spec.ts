import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { expect, test, type Browser, type Page } from "@playwright/test";
import * as net from "node:net";
import { baseURL, dataDir, serverBin } from "../playwright.config";

const PASSWORD = "correct horse battery";

/** Grants the admin role as an operator does: the server binary's admin command. */
function grantAdmin(name: string) {
  const root = path.resolve(__dirname, "..", "..");
  execFileSync(path.resolve(root, "end2end", serverBin), ["admin", "grant", name], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir },
    stdio: "pipe",
  });
}

/** A signed-in page on /home, in its own browser context (its own cookies). */
async function openHome(browser: Browser, name: string, admin = false): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const signup = await page.request.post("/api/auth/signup", {
    form: { username: name, password: PASSWORD },
  });
  if (signup.status() === 409) {
    const login = await page.request.post("/api/auth/login", {
      form: { username: name, password: PASSWORD },
    });
    expect(login.status()).toBe(200);
  } else {
    expect(signup.status()).toBe(200);
  }
  if (admin) grantAdmin(name);
  await page.goto("/home");
  await expect(page.getByTestId("status")).toHaveText("Connected");
  return page;
}

async function send(page: Page, to: string, message: string) {
  await page.getByLabel("User").fill(to);
  await page.getByLabel("Message").fill(message);
  await page.getByRole("button", { name: "Send" }).click();
}

const suffix = () => Math.floor(Math.random() * 1e6).toString(36);

test("a message from A reaches B only; an admin broadcast reaches both", async ({ browser }, info) => {
  const nameA = `ann${suffix()}`;
  const nameB = `bea${suffix()}`;
  const a = await openHome(browser, nameA);
  const b = await openHome(browser, nameB);

  await expect(a.getByTestId("latest")).toHaveText("No messages yet.");
  await send(a, nameB, "Hello B, from A");
  await expect(b.getByTestId("latest")).toHaveText(`${nameA}: Hello B, from A`, { timeout: 2_000 });
  await expect(b.getByRole("list", { name: "Received notifications" }).getByRole("listitem")).toHaveCount(1);
  await expect(a.getByText(/Delivered to 1 connection/)).toBeVisible();
  await expect(a.getByTestId("latest")).toHaveText("No messages yet.");

  await send(a, nameB, "Second one");
  await expect(b.getByTestId("latest")).toHaveText(`${nameA}: Second one`, { timeout: 2_000 });
  const items = b.getByRole("list", { name: "Received notifications" }).getByRole("listitem");
  await expect(items).toHaveCount(2);
  await expect(items.first()).toContainText("Second one");

  // Errors read in words next to the form (the page's other boxes have
  // alerts of their own).
  const sendAlert = a.getByRole("form", { name: "Send a notification" }).getByRole("alert");
  await send(a, "nobody-here", "hi");
  await expect(sendAlert).toHaveText('There is no user named "nobody-here".');
  await a.getByLabel("User").fill(nameB);
  await a.getByLabel("Message").fill("");
  await a.getByRole("button", { name: "Send" }).click();
  await expect(sendAlert).toHaveText("The message is empty.");

  // Non-admins have no Broadcast button; the admin does, and it reaches both.
  await expect(a.getByRole("button", { name: "Broadcast" })).toHaveCount(0);
  const admin = await openHome(browser, "e2eadmin", true);
  await admin.getByLabel("Message").fill("Maintenance at noon");
  await admin.getByRole("button", { name: "Broadcast" }).click();
  await expect(a.getByTestId("latest")).toHaveText("e2eadmin: Maintenance at noon", { timeout: 2_000 });
  await expect(b.getByTestId("latest")).toHaveText("e2eadmin: Maintenance at noon", { timeout: 2_000 });

  await a.screenshot({ path: info.outputPath("home-user-a.png"), fullPage: true });
  await b.screenshot({ path: info.outputPath("home-user-b.png"), fullPage: true });
  await admin.context().close();
  await a.context().close();
  await b.context().close();
});

test("TrackConnections counts open pages live", async ({ browser }) => {
  const a = await openHome(browser, `cam${suffix()}`);
  const b = await openHome(browser, `dan${suffix()}`);
  const total = a.getByTestId("total-clients");
  await expect(total).toHaveText("2", { timeout: 5_000 });
  await b.context().close();
  await expect(total).toHaveText("1", { timeout: 5_000 });
  await a.context().close();
});

test("a reload reconnects and receives the next message", async ({ browser }) => {
  const name = `eve${suffix()}`;
  const page = await openHome(browser, name);
  await page.reload();
  await expect(page.getByTestId("status")).toHaveText("Connected");
  await send(page, name, "after reload");
  await expect(page.getByTestId("latest")).toHaveText(`${name}: after reload`, { timeout: 2_000 });
  await page.context().close();
});

test("the page works on a narrow screen", async ({ browser }) => {
  const page = await openHome(browser, `fay${suffix()}`);
  await page.setViewportSize({ width: 375, height: 800 });
  await expect(page.getByRole("button", { name: "Send" })).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.context().close();
});

/** A TCP proxy in front of the server whose connections the test can
 *  cut (every open one closed, new ones refused) and restore. */
async function cuttableProxy(targetPort: number) {
  let open = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(socket);
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      open = true;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test("notifications sent while the page's stream is cut arrive after the reconnect, in order, once each", async ({
  browser,
}) => {
  const proxy = await cuttableProxy(Number(new URL(baseURL).port));
  const nameA = `gus${suffix()}`;
  // A reaches the server through the proxy; B directly.
  const context = await browser.newContext({ baseURL: proxy.origin });
  const a = await context.newPage();
  expect((await a.request.post("/api/auth/signup", { form: { username: nameA, password: PASSWORD } })).status()).toBe(200);
  await a.goto("/home");
  await expect(a.getByTestId("status")).toHaveText("Connected");
  const b = await openHome(browser, `hal${suffix()}`);
  const received = a.getByRole("list", { name: "Received notifications" }).getByRole("listitem");
  const post = async (message: string) => {
    const response = await b.request.post("/api/sse/test", { data: { user: nameA, message } });
    expect(response.status()).toBe(200);
  };
  await post("before");
  await expect(received).toHaveCount(1);

  // The network between A and the server goes down: its stream breaks
  // and its reconnects fail, while five notifications are sent.
  proxy.cut();
  await expect(a.getByTestId("status")).toHaveText(/Reconnecting/, { timeout: 10_000 });
  for (let n = 1; n <= 5; n++) await post(`missed ${n}`);
  proxy.restore();

  await expect(a.getByTestId("status")).toHaveText("Connected", { timeout: 15_000 });
  await expect(received).toHaveCount(6, { timeout: 5_000 });
  // Newest first: the five, in order, then the one from before.
  const texts = await received.locator(".message").allTextContents();
  expect(texts).toEqual(["missed 5", "missed 4", "missed 3", "missed 2", "missed 1", "before"]);
  // Nothing arrives twice later on.
  await a.waitForTimeout(1_000);
  await expect(received).toHaveCount(6);
  await context.close();
  await b.context().close();
  await proxy.close();
});
