import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { expect, test, type Browser, type Page } from "@playwright/test";
import { dataDir, serverBin } from "../playwright.config";

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

  // Errors read in words next to the form.
  await send(a, "nobody-here", "hi");
  await expect(a.getByRole("alert")).toHaveText('There is no user named "nobody-here".');
  await a.getByLabel("User").fill(nameB);
  await a.getByLabel("Message").fill("");
  await a.getByRole("button", { name: "Send" }).click();
  await expect(a.getByRole("alert")).toHaveText("The message is empty.");

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
