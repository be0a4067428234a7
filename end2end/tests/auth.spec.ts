import { expect, test } from "@playwright/test";

// Each run uses a fresh data directory, but names stay unique per test anyway.
const unique = (prefix: string) => `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "correct horse battery";

test("signed out, /home lands on /login; after sign-up it returns to /home", async ({ page }) => {
  const response = await page.goto("/home");
  expect(response?.status()).toBe(200);
  await expect(page).toHaveURL(/\/login\?next=%2Fhome|\/login\?next=\/home/);
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();

  await page.getByRole("link", { name: "Create one" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Create an account" })).toBeVisible();
  const name = unique("pw");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();

  await expect(page).toHaveURL(/\/home$/);
  await expect(page.getByRole("heading", { level: 1, name: "Your notifications" })).toBeVisible();
  await expect(page.locator(".username")).toHaveText(name);

  // Sign out → back to the sign-in page; /home is closed again.
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto("/home");
  await expect(page).toHaveURL(/\/login/);
});

test("a wrong password shows an error next to the form", async ({ page }) => {
  const name = unique("pw");
  const signup = await page.request.post("/api/auth/signup", {
    form: { username: name, password: PASSWORD },
  });
  expect(signup.status()).toBe(200);
  await page.context().clearCookies();

  await page.goto("/login");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Wrong username or password.");
  await expect(page).toHaveURL(/\/login/);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("the sign-in form works before hydration", async ({ page }) => {
    const name = unique("nojs");
    const signup = await page.request.post("/api/auth/signup", {
      form: { username: name, password: PASSWORD },
    });
    expect(signup.status()).toBe(200);
    await page.context().clearCookies();

    await page.goto("/login?next=/home");
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password").fill("wrong password!");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toHaveText("Wrong username or password.");

    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/home$/);
    await expect(page.locator(".username")).toHaveText(name);
  });
});
