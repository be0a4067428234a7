import { expect, test } from "@playwright/test";

const PASSWORD = "correct horse battery";
const suffix = () => Math.floor(Math.random() * 1e6).toString(36);

// Joining a room in the UI is what lets this user's streams (and presence
// queries) use the channel room:<name>; leaving takes it back.
test("a room joined on /home opens its channel; leaving closes it", async ({ browser }) => {
  const context = await browser.newContext();
  const name = `rm${suffix()}`;
  const room = `r${suffix()}`;
  const signup = await context.request.post("/api/auth/signup", {
    form: { username: name, password: PASSWORD },
  });
  expect(signup.status()).toBe(200);
  const channel = async (r: string) =>
    (await context.request.get(`/api/presence?channel=room:${r}`)).status();

  const page = await context.newPage();
  await page.goto("/home");
  await expect(page.getByTestId("status")).toHaveText("Connected");
  expect(await channel(room)).toBe(403);

  await page.getByLabel("Room", { exact: true }).fill(room);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  const rooms = page.getByRole("list", { name: "Your rooms" });
  await expect(rooms.getByRole("listitem")).toHaveText([new RegExp(room)]);
  expect(await channel(room)).toBe(200);
  expect(await channel(`${room}x`)).toBe(403);

  // A bad name is refused with the server's words.
  await page.getByLabel("Room", { exact: true }).fill("no spaces");
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await expect(page.getByRole("alert").filter({ hasText: "tag value" })).toBeVisible();

  // Still there after a reload (kept on the server).
  await page.reload();
  await expect(rooms.getByRole("listitem")).toHaveText([new RegExp(room)]);
  await page.getByRole("button", { name: `Leave ${room}` }).click();
  await expect(rooms.getByRole("listitem")).toHaveCount(0);
  expect(await channel(room)).toBe(403);
  await context.close();
});
