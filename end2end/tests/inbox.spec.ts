import { expect, test, type BrowserContext, type Page } from "@playwright/test";

const PASSWORD = "correct horse battery";
const suffix = () => Math.floor(Math.random() * 1e6).toString(36);

async function account(context: BrowserContext, name: string) {
  const signup = await context.request.post("/api/auth/signup", {
    form: { username: name, password: PASSWORD },
  });
  expect(signup.status()).toBe(200);
}

async function sendApi(context: BrowserContext, to: string, message: string) {
  const sent = await context.request.post("/api/sse/test", { data: { user: to, message } });
  expect(sent.status()).toBe(200);
  expect((await sent.json()).id).toBeGreaterThan(0);
}

async function home(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.goto("/home");
  await expect(page.getByTestId("status")).toHaveText("Connected");
  return page;
}

const listItems = (page: Page) =>
  page.getByRole("list", { name: "Received notifications" }).getByRole("listitem");

test("B was offline: A's 3 notifications wait unread; mark all read in one tab clears the other's badge", async ({
  browser,
}) => {
  const nameA = `ina${suffix()}`;
  const nameB = `inb${suffix()}`;
  const a = await browser.newContext();
  const b = await browser.newContext();
  await account(a, nameA);
  await account(b, nameB);

  // B has no page open while A sends.
  for (const message of ["first", "second", "third"]) await sendApi(a, nameB, message);

  const tab1 = await home(b);
  await expect(listItems(tab1)).toHaveCount(3);
  await expect(listItems(tab1).first()).toContainText("third");
  await expect(listItems(tab1).last()).toContainText("first");
  await expect(tab1.locator("li.unread")).toHaveCount(3);
  await expect(tab1.getByTestId("unread-badge")).toHaveText("3");

  const tab2 = await home(b);
  await expect(tab2.getByTestId("unread-badge")).toHaveText("3");
  await expect(tab2.locator("li.unread")).toHaveCount(3);

  // One read in tab 1: both tabs follow within a second.
  await tab1.locator("li.unread").filter({ hasText: "second" }).getByRole("button", { name: "Mark read" }).click();
  await expect(tab2.getByTestId("unread-badge")).toHaveText("2", { timeout: 1_000 });
  await expect(tab2.locator("li.read")).toHaveCount(1);

  // Mark all read in tab 1: tab 2's badge goes to 0.
  await tab1.getByRole("button", { name: "Mark all read" }).click();
  await expect(tab2.getByTestId("unread-badge")).toHaveText("0", { timeout: 1_000 });
  await expect(tab2.locator("li.unread")).toHaveCount(0);
  await expect(tab1.getByTestId("unread-badge")).toHaveText("0");

  // A reload shows the same list, read.
  await tab1.reload();
  await expect(tab1.getByTestId("status")).toHaveText("Connected");
  await expect(listItems(tab1)).toHaveCount(3);
  await expect(tab1.locator("li.read")).toHaveCount(3);

  // Older notifications come page by page (20 at a time).
  for (let n = 0; n < 22; n++) await sendApi(a, nameB, `batch ${n}`);
  await expect(tab2.getByTestId("unread-badge")).toHaveText("22");
  // Reloaded, tab 1 joins the stream tab 2 now holds (one stream per
  // browser): it reads the first page (20) itself; a stream's opening
  // backlog went to the tab that opened it.
  await tab1.reload();
  await expect(tab1.getByTestId("status")).toHaveText("Connected");
  await expect(listItems(tab1)).toHaveCount(20);
  await expect(tab1.getByTestId("unread-badge")).toHaveText("22");
  // With a stream of its own, the first page (20) and the stream's unread
  // backlog (22), merged.
  await tab1.goto("/home?tabs=separate");
  await expect(tab1.getByTestId("status")).toHaveText("Connected");
  await expect(listItems(tab1)).toHaveCount(22);
  await expect(listItems(tab1).first()).toContainText("batch 21");
  await tab1.getByRole("button", { name: "Load older" }).click();
  await expect(listItems(tab1)).toHaveCount(25);
  await expect(listItems(tab1).last()).toContainText("first");
  await expect(tab1.getByRole("button", { name: "Load older" })).toHaveCount(0);

  await a.close();
  await b.close();
});
