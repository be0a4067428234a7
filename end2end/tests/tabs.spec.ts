import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";
import { baseURL } from "../playwright.config";

// One stream per browser: the tabs of one profile share the stream of
// one of them (Web Locks elect it, a BroadcastChannel relays it).

const PASSWORD = "correct horse battery";
const suffix = () => Math.floor(Math.random() * 1e6).toString(36);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function account(context: BrowserContext, name: string, action = "signup") {
  const response = await context.request.post(`/api/auth/${action}`, {
    form: { username: name, password: PASSWORD },
  });
  expect(response.status()).toBe(200);
}

async function home(context: BrowserContext, path = "/home"): Promise<Page> {
  const page = await context.newPage();
  await page.goto(path);
  await expect(page.getByTestId("status")).toHaveText("Connected");
  return page;
}

/** The user's open streams, as the server lists them. */
async function streams(context: BrowserContext): Promise<{ id: string; connectedSince: number }[]> {
  const response = await context.request.get(`${baseURL}/api/sse/clients`);
  expect(response.status()).toBe(200);
  return (await response.json()).clients;
}

async function send(context: BrowserContext, to: string, message: string) {
  const sent = await context.request.post(`${baseURL}/api/sse/test`, { data: { user: to, message } });
  expect(sent.status()).toBe(200);
}

/** What a tab received, in arrival order (the page's own record). */
async function arrivals(page: Page): Promise<{ count: string; last: string[] }> {
  const line = page.getByTestId("arrivals");
  return { count: (await line.textContent()) ?? "", last: JSON.parse((await line.getAttribute("data-last")) ?? "[]") };
}

async function expectReceived(page: Page, messages: string[], timeout = 5_000) {
  await expect(page.getByTestId("arrivals")).toHaveText(`${messages.length} received in this tab`, { timeout });
  expect((await arrivals(page)).last).toEqual(messages);
}

/** A new browser profile (context), signed up as a new user, with `count`
 *  tabs of /home opened one after the other (the first one leads). */
async function tabsOf(browser: Browser, prefix: string, count: number, init?: () => void) {
  const name = `${prefix}${suffix()}`;
  const context = await browser.newContext();
  if (init) await context.addInitScript(init);
  await account(context, name);
  const tabs: Page[] = [];
  for (let i = 0; i < count; i++) tabs.push(await home(context));
  return { name, context, tabs };
}

test("8 tabs of one browser hold one stream, and each shows a notification once", async ({ browser }) => {
  const { name, context, tabs } = await tabsOf(browser, "tab", 8);
  await expect.poll(async () => (await streams(context)).length).toBe(1);

  await send(context, name, "to every tab");
  for (const tab of tabs) {
    await expect(tab.getByTestId("latest")).toHaveText(`${name}: to every tab`);
    await expectReceived(tab, ["to every tab"]);
  }
  // Nothing arrives twice later on, and still one stream.
  await sleep(500);
  for (const tab of tabs) await expectReceived(tab, ["to every tab"]);
  expect((await streams(context)).length).toBe(1);

  // Another profile (a second browser context) has a stream of its own.
  const other = await browser.newContext();
  await account(other, name, "login");
  const otherTab = await home(other);
  await expect.poll(async () => (await streams(context)).length).toBe(2);
  await send(context, name, "to both browsers");
  // A stream of its own starts with the unread notifications.
  await expectReceived(otherTab, ["to every tab", "to both browsers"]);
  for (const tab of tabs) await expectReceived(tab, ["to every tab", "to both browsers"]);

  await other.close();
  await context.close();
});

test("closing the leading tab while 20 notifications are sent: every other tab gets all 20, in order, once", async ({
  browser,
}) => {
  // The first tab takes the lock: it leads.
  const { name, context, tabs } = await tabsOf(browser, "han", 6);
  await expect.poll(async () => (await streams(context)).length).toBe(1);
  const [before] = await streams(context);

  const messages = Array.from({ length: 20 }, (_, i) => `n${i + 1}`);
  const sending = (async () => {
    for (const message of messages) {
      await send(context, name, message);
      await sleep(40);
    }
  })();
  await expect.poll(async () => (await arrivals(tabs[1])).last.length, { intervals: [20] }).toBeGreaterThanOrEqual(4);
  const closedAt = Date.now();
  await tabs[0].close();
  // The server has one stream again: the one a remaining tab opened.
  let handOver = 0;
  await expect
    .poll(
      async () => {
        const now = await streams(context);
        const fresh = now.length === 1 && now[0].connectedSince > before.connectedSince;
        if (fresh && !handOver) handOver = Date.now() - closedAt;
        return fresh;
      },
      { timeout: 2_000, intervals: [25] },
    )
    .toBe(true);
  test.info().annotations.push({ type: "hand-over", description: `${handOver} ms` });
  console.log(`hand-over: new stream registered ${handOver} ms after the leading tab closed`);
  await sending;

  for (const tab of tabs.slice(1)) await expectReceived(tab, messages);
  await sleep(500);
  for (const tab of tabs.slice(1)) await expectReceived(tab, messages);
  const after = await streams(context);
  expect(after.length).toBe(1);
  // The new leader asked for the client id back: events sent to it reach it.
  expect(after[0].id).toBe(before.id);
  await context.close();
});

test("sharing turned off, or across two origins: one stream per tab, each still correct", async ({ browser }) => {
  test.setTimeout(60_000);
  const name = `sep${suffix()}`;
  const context = await browser.newContext();
  await account(context, name);
  // Two origins for one session: a browser opens at most 6 connections per
  // host over HTTP/1.1, which 8 separate streams on one host would exceed.
  const port = new URL(baseURL).port;
  const other = `http://localhost:${port}`;
  const cookies = await context.cookies(baseURL);
  await context.addCookies(cookies.map(({ name, value }) => ({ name, value, url: other })));
  const tabs: Page[] = [];
  for (let i = 0; i < 8; i++) {
    tabs.push(await home(context, `${i < 4 ? baseURL : other}/home?tabs=separate`));
  }
  await expect.poll(async () => (await streams(context)).length).toBe(8);
  await send(context, name, "to eight streams");
  for (const tab of tabs) await expectReceived(tab, ["to eight streams"]);
  for (const tab of tabs) await tab.close();
  await expect.poll(async () => (await streams(context)).length).toBe(0);
  // Read, so that the next streams do not start with it as unread.
  expect((await context.request.post(`${baseURL}/api/inbox/read-all`, { data: {} })).status()).toBe(200);

  // Sharing on: one stream per origin (locks and channels are per origin).
  const shared: Page[] = [];
  for (let i = 0; i < 8; i++) shared.push(await home(context, `${i < 4 ? baseURL : other}/home`));
  await expect.poll(async () => (await streams(context)).length).toBe(2);
  await send(context, name, "to two streams");
  for (const tab of shared) await expectReceived(tab, ["to two streams"]);
  await context.close();
});

test("a browser without Web Locks gives each tab its own stream", async ({ browser }) => {
  const { name, context, tabs } = await tabsOf(browser, "old", 3, () => {
    Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined });
  });
  await expect.poll(async () => (await streams(context)).length).toBe(3);
  await send(context, name, "three streams");
  for (const tab of tabs) await expectReceived(tab, ["three streams"]);
  await context.close();
});

test("signing out ends the shared stream in every tab", async ({ browser }) => {
  const { name, context, tabs } = await tabsOf(browser, "out", 3);
  await expect.poll(async () => (await streams(context)).length).toBe(1);
  let refused = 0;
  context.on("response", (response) => {
    if (new URL(response.url()).pathname === "/api/sse" && response.status() === 401) refused += 1;
  });
  const out = await context.request.post(`${baseURL}/api/auth/logout`);
  expect(out.status()).toBe(200);
  // The leader finds it is signed out (its reconnect, then its status
  // probe, get 401) and says so: every tab closes with it, none tries.
  for (const tab of tabs) {
    await expect(tab.getByTestId("status")).toHaveText("Disconnected: signed out (401)", { timeout: 10_000 });
  }
  await sleep(1_000);
  expect(refused).toBeGreaterThanOrEqual(1);
  expect(refused).toBeLessThanOrEqual(2);
  await context.close();
});

test("a tab that disconnects hands the stream over; it alone stops receiving", async ({ browser }) => {
  const { name, context, tabs } = await tabsOf(browser, "bye", 3);
  await expect.poll(async () => (await streams(context)).length).toBe(1);
  const [before] = await streams(context);
  // The first tab leads; it says it leaves and gives the lock back.
  await tabs[0].getByRole("button", { name: "Disconnect this tab" }).click();
  await expect(tabs[0].getByTestId("status")).toHaveText("Disconnected: closed by the page");
  await expect
    .poll(async () => {
      const now = await streams(context);
      return now.length === 1 && now[0].connectedSince > before.connectedSince;
    })
    .toBe(true);
  for (const tab of tabs.slice(1)) await expect(tab.getByTestId("status")).toHaveText("Connected");
  await send(context, name, "after the hand-over");
  for (const tab of tabs.slice(1)) await expectReceived(tab, ["after the hand-over"]);
  // A follower that disconnects changes nothing for the others.
  await tabs[2].getByRole("button", { name: "Disconnect this tab" }).click();
  await send(context, name, "second");
  await expectReceived(tabs[1], ["after the hand-over", "second"]);
  await sleep(300);
  await expectReceived(tabs[0], []);
  await expectReceived(tabs[2], ["after the hand-over"]);
  expect((await streams(context)).length).toBe(1);
  await context.close();
});

test("where the browser refuses the lock, each tab opens its own stream", async ({ browser }) => {
  const { name, context, tabs } = await tabsOf(browser, "den", 2, () => {
    // As for a sandboxed frame or blocked site data: the request rejects.
    LockManager.prototype.request = () => Promise.reject(new DOMException("refused", "SecurityError"));
  });
  await expect.poll(async () => (await streams(context)).length).toBe(2);
  await send(context, name, "two streams");
  for (const tab of tabs) await expectReceived(tab, ["two streams"]);
  await context.close();
});

test("a leading tab whose page is blocked is taken over by a visible tab; nothing is lost or repeated", async ({
  browser,
}) => {
  test.setTimeout(60_000);
  const { name, context, tabs } = await tabsOf(browser, "blk", 3);
  await expect.poll(async () => (await streams(context)).length).toBe(1);
  const [before] = await streams(context);
  // The leader's page is busy for 14 s (as under an alert() or a debugger).
  const blocked = tabs[0].evaluate(() => {
    const end = Date.now() + 14_000;
    while (Date.now() < end) {
      // busy
    }
  });
  await sleep(300);
  const sentAt = Date.now();
  await send(context, name, "while blocked");
  // Followers wait 8 to 12 s without a word from the leader (a beat every 2 s).
  for (const tab of tabs.slice(1)) await expectReceived(tab, ["while blocked"], 20_000);
  const takeOver = Date.now() - sentAt;
  console.log(`blocked leader: the other tabs had the event ${takeOver} ms after it was sent`);
  const now = await streams(context);
  expect(now.length).toBe(1);
  expect(now[0].connectedSince).toBeGreaterThan(before.connectedSince);
  await blocked;
  // The old leader, awake again, follows: one stream, every tab gets
  // every event once.
  await expect(tabs[0].getByTestId("status")).toHaveText("Connected");
  await send(context, name, "after");
  for (const tab of tabs) await expectReceived(tab, ["while blocked", "after"]);
  // One leader only: two would hold a stream each with the same client
  // id, and the server would keep replacing one with the other.
  const [settled] = await streams(context);
  await sleep(3_000);
  for (const tab of tabs) await expectReceived(tab, ["while blocked", "after"]);
  const later = await streams(context);
  expect(later.map((c) => [c.id, c.connectedSince])).toEqual([[settled.id, settled.connectedSince]]);
  await context.close();
});
