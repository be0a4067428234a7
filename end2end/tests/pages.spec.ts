import { expect, test } from "@playwright/test";

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("the landing page is rendered on the server", async ({ page }) => {
    const response = await page.goto("/");
    expect(response?.status()).toBe(200);
    await expect(
      page.getByRole("heading", {
        level: 1,
        name: "Real-time notifications, straight from your Rust backend",
      }),
    ).toBeVisible();
    await expect(page.getByRole("button", { name: "Preview a notification" })).toBeVisible();
    await expect(page.getByText("No preview notifications yet")).toBeVisible();
  });
});

test("the landing page hydrates and reacts to clicks", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });

  await page.goto("/");
  const button = page.getByRole("button", { name: "Preview a notification" });
  const count = page.locator(".preview-count");
  await expect(count).toHaveText("No preview notifications yet");

  // The button only works once the WASM bundle has hydrated the page, so
  // click until it reacts (the first clicks may land before hydration).
  await expect(async () => {
    await button.click();
    await expect(count).not.toHaveText("No preview notifications yet", { timeout: 500 });
  }).toPass({ timeout: 15_000 });

  const before = await count.textContent();
  await button.click();
  await expect(count).not.toHaveText(before ?? "");
  await expect(count).toHaveText(/\d+ preview notifications/);
  expect(errors).toEqual([]);
});

test("an unknown path gives the styled 404 page with status 404", async ({ page }) => {
  const response = await page.goto("/nope");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { level: 1, name: "Page not found" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Back to the start page" })).toBeVisible();
  await expect(page).toHaveTitle("Page not found · Notify");
});

test("static files are served: stylesheet and favicon", async ({ page, request }) => {
  await page.goto("/");
  const href = await page.locator('link[rel="stylesheet"]').first().getAttribute("href");
  expect(href).toMatch(/^\/pkg\/sse_notify\.[A-Za-z0-9_-]{22}\.css$/);
  const css = await request.get(href!);
  expect(css.status()).toBe(200);
  expect(css.headers()["content-type"]).toContain("text/css");
  const icon = await request.get("/favicon.ico");
  expect(icon.status()).toBe(200);
});
